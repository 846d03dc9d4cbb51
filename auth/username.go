package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds on usernames. RFC 8489 section 14.3: "The value of USERNAME is a
// variable-length value containing the authentication username. It MUST
// contain a UTF-8-encoded [RFC3629] sequence of fewer than 509 bytes" (RFC
// 5389 allowed 513); avedge accepts at most MaxUsernameLen bytes.
const (
	MaxUsernameLen = 512
	// MaxIdentityLen bounds the identity inside a keyed username.
	MaxIdentityLen = 256
	// maxExpiryDigits bounds the decimal expiry (int64 has 19 digits).
	maxExpiryDigits = 19
)

// keyedPrefix starts every keyed (MRAS-issued) username; see the package doc.
const keyedPrefix = "mras1:"

var identityEncoding = base64.RawURLEncoding.Strict()

// validUsername reports whether s is 1..MaxUsernameLen bytes of UTF-8 without
// control characters.
func validUsername(s string) bool {
	if len(s) == 0 || len(s) > MaxUsernameLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// ValidIdentity reports whether identity may be bound into a keyed username:
// at most MaxIdentityLen bytes of UTF-8 without control characters.
func ValidIdentity(identity string) bool {
	return len(identity) <= MaxIdentityLen && (identity == "" || validUsername(identity))
}

// MintMRAS returns a keyed credential, the shape the credential service
// issues: username "mras1:<key-id>:<unix-expiry>:<base64url(identity)>" and
// password base64(HMAC-SHA256(secret.Value, username)). The caller checks
// identity with ValidIdentity; an identity that fails it yields a username
// Lookup rejects as malformed.
func MintMRAS(secret Secret, identity string, expiry time.Time) (username, password string) {
	var b strings.Builder
	b.Grow(len(keyedPrefix) + len(secret.ID) + 1 + maxExpiryDigits + 1 + identityEncoding.EncodedLen(len(identity)))
	b.WriteString(keyedPrefix)
	b.WriteString(secret.ID)
	b.WriteByte(':')
	b.WriteString(strconv.FormatInt(expiry.Unix(), 10))
	b.WriteByte(':')
	b.WriteString(identityEncoding.EncodeToString([]byte(identity)))
	username = b.String()
	return username, KeyedPassword(secret.Value, username)
}

// KeyedPassword returns base64(HMAC-SHA256(secret, username)), the password of
// a keyed username.
func KeyedPassword(secret []byte, username string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(username))
	var sum [sha256.Size]byte
	return base64.StdEncoding.EncodeToString(mac.Sum(sum[:0]))
}

// keyedUsername is a parsed keyed username.
type keyedUsername struct {
	keyID    string
	expiry   time.Time
	identity string
}

// parseKeyed parses a keyed username (which starts with keyedPrefix) strictly.
func parseKeyed(s string) (keyedUsername, bool) {
	rest, ok := strings.CutPrefix(s, keyedPrefix)
	if !ok {
		return keyedUsername{}, false
	}
	keyID, rest, ok := strings.Cut(rest, ":")
	if !ok || !validKeyID(keyID) {
		return keyedUsername{}, false
	}
	exp, id64, ok := strings.Cut(rest, ":")
	if !ok || len(exp) > 1 && exp[0] == '0' {
		return keyedUsername{}, false
	}
	expiry, ok := parseExpiry(exp)
	if !ok || len(id64) > identityEncoding.EncodedLen(MaxIdentityLen) {
		return keyedUsername{}, false
	}
	identity, err := identityEncoding.DecodeString(id64)
	if err != nil || !ValidIdentity(string(identity)) {
		return keyedUsername{}, false
	}
	return keyedUsername{keyID: keyID, expiry: expiry, identity: string(identity)}, true
}

// parseExpiry parses 1..19 decimal digits (no sign) as unix seconds.
func parseExpiry(s string) (time.Time, bool) {
	if len(s) == 0 || len(s) > maxExpiryDigits {
		return time.Time{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}
