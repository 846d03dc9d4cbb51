package auth

import (
	"crypto/md5" //nolint:gosec // the STUN long-term key is defined on MD5.
	"fmt"
	"io"
	"maps"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultSkew is the clock skew the relay tolerates on expiry unless
// configured otherwise. ValidatorConfig's zero Skew means no skew at all.
const DefaultSkew = 30 * time.Second

// ValidatorConfig configures a Validator. The zero value accepts nothing.
type ValidatorConfig struct {
	// Keyring holds the shared secrets for REST and keyed usernames; nil means
	// no shared-secret credentials. The keyring may be updated at any time.
	Keyring *Keyring
	// Users are static long-term users (name → password); nil means none.
	// The map is copied; replace it later with SetUsers.
	Users map[string]string
	// Separator separates expiry and user in REST usernames; "" means ":".
	Separator string
	// Skew is the tolerated clock skew on expiry: a credential is accepted
	// until expiry+Skew. 0 means none; the relay uses DefaultSkew.
	Skew time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Credential is what the relay needs to check MESSAGE-INTEGRITY.
type Credential struct {
	// UserID is the identity: REST: the <user> part, or the whole username
	// when the user part is empty; static: the name; keyed: the identity, or
	// the whole username when the identity is empty.
	UserID string
	// Passwords are the candidate passwords, newest key first: exactly one
	// for a static user or a keyed username; one per live secret for a REST
	// username.
	Passwords []string
	// KeyIDs is parallel to Passwords ("" for a static user).
	KeyIDs []string
	// Expiry is when the credential expires (without skew); zero for static
	// users.
	Expiry time.Time
}

// Validator parses and checks usernames for the relay's AuthHandler. It is
// safe for concurrent use; its users and keyring may be swapped at runtime.
type Validator struct {
	keyring *Keyring         // Static after construction (its content is swappable).
	sep     string           // Static after construction.
	skew    time.Duration    // Static after construction.
	now     func() time.Time // Static after construction.

	users atomic.Pointer[map[string]string] // immutable once stored
}

// NewValidator returns a Validator for cfg.
func NewValidator(cfg ValidatorConfig) *Validator {
	v := &Validator{keyring: cfg.Keyring, sep: cfg.Separator, skew: cfg.Skew, now: cfg.Now}
	if v.sep == "" {
		v.sep = DefaultSeparator
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.SetUsers(cfg.Users)
	return v
}

// SetUsers replaces the static users atomically (for reload). The map is
// copied; nil means none.
func (v *Validator) SetUsers(users map[string]string) {
	cp := maps.Clone(users)
	v.users.Store(&cp)
}

// Keyring returns the validator's keyring (nil if none).
func (v *Validator) Keyring() *Keyring { return v.keyring }

// Lookup parses and checks a username: bounds, shape, expiry (with skew) and
// key id. It does not see the password: the relay checks MESSAGE-INTEGRITY
// with each candidate. Errors wrap ErrMalformed, ErrExpired, ErrUnknownKey or
// ErrUnknownUser.
func (v *Validator) Lookup(username string) (Credential, error) {
	if !validUsername(username) {
		return Credential{}, fmt.Errorf("auth: username of %d bytes: %w", len(username), ErrMalformed)
	}
	if users := *v.users.Load(); users != nil {
		if pw, ok := users[username]; ok {
			return Credential{UserID: username, Passwords: []string{pw}, KeyIDs: []string{""}}, nil
		}
	}
	switch c := username[0]; {
	case c == keyedPrefix[0]:
		if strings.HasPrefix(username, keyedPrefix) {
			return v.lookupKeyed(username)
		}
	case c >= '0' && c <= '9':
		return v.lookupREST(username)
	}
	return Credential{}, fmt.Errorf("auth: %q: %w", truncate(username), ErrUnknownUser)
}

func (v *Validator) lookupKeyed(username string) (Credential, error) {
	k, ok := parseKeyed(username)
	if !ok {
		return Credential{}, fmt.Errorf("auth: keyed username %q: %w", truncate(username), ErrMalformed)
	}
	if err := v.checkExpiry(k.expiry); err != nil {
		return Credential{}, err
	}
	secret, ok := v.keyring.ByID(k.keyID)
	if !ok {
		return Credential{}, fmt.Errorf("auth: key id %q: %w", k.keyID, ErrUnknownKey)
	}
	id := k.identity
	if id == "" {
		id = username
	}
	return Credential{
		UserID:    id,
		Passwords: []string{KeyedPassword(secret.Value, username)},
		KeyIDs:    []string{secret.ID},
		Expiry:    k.expiry,
	}, nil
}

// coturn, turn_server/userdb.c (use-auth-secret): the username is the
// timestamp, optionally followed by the separator and the user; a timestamp
// in the past is rejected.
func (v *Validator) lookupREST(username string) (Credential, error) {
	exp, user, _ := strings.Cut(username, v.sep)
	expiry, ok := parseExpiry(exp)
	if !ok {
		return Credential{}, fmt.Errorf("auth: REST username %q: %w", truncate(username), ErrMalformed)
	}
	if err := v.checkExpiry(expiry); err != nil {
		return Credential{}, err
	}
	secrets := v.keyring.Secrets()
	if len(secrets) == 0 {
		return Credential{}, fmt.Errorf("auth: REST username with no secret configured: %w", ErrUnknownKey)
	}
	if user == "" {
		user = username
	}
	c := Credential{
		UserID:    user,
		Passwords: make([]string, len(secrets)),
		KeyIDs:    make([]string, len(secrets)),
		Expiry:    expiry,
	}
	for i, s := range secrets {
		c.Passwords[i] = RESTPassword(s.Value, username)
		c.KeyIDs[i] = s.ID
	}
	return c, nil
}

// checkExpiry accepts a credential until expiry+skew inclusive.
func (v *Validator) checkExpiry(expiry time.Time) error {
	if now := v.now(); now.After(expiry.Add(v.skew)) {
		return fmt.Errorf("auth: expired at %d, now %d: %w", expiry.Unix(), now.Unix(), ErrExpired)
	}
	return nil
}

// truncate shortens untrusted text quoted in errors.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// LongTermKey returns the STUN long-term credential key for a password.
// RFC 8489 section 9.2.2:
//
//	key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))
//
// avedge passwords are base64 (ASCII), for which OpaqueString is the
// identity; the result equals pion/turn's GenerateAuthKey.
func LongTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // mandated by RFC 8489
	io.WriteString(h, username)
	io.WriteString(h, ":")
	io.WriteString(h, realm)
	io.WriteString(h, ":")
	io.WriteString(h, password)
	return h.Sum(make([]byte, 0, md5.Size))
}

// Keys returns the long-term keys of the candidate passwords for username
// in realm, parallel to c.Passwords: the relay checks MESSAGE-INTEGRITY with
// each until one matches.
func (c Credential) Keys(username, realm string) [][]byte {
	keys := make([][]byte, len(c.Passwords))
	for i, p := range c.Passwords {
		keys[i] = LongTermKey(username, realm, p)
	}
	return keys
}
