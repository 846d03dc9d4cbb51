package auth

import (
	"encoding/base64"
	"strconv"
	"time"
)

// DefaultSeparator separates expiry and user in a TURN REST username, as in
// coturn's rest-api-separator default.
const DefaultSeparator = ":"

// draft-uberti-behave-turn-rest-00, section 2.2:
//
//	username: the TURN username to use, which is a colon-delimited
//	combination of the expiration timestamp and the username parameter
//	from the request (if specified). The timestamp is the time at which
//	the credentials expire, expressed as a UNIX timestamp.
//
//	password: the TURN password to use; this value is computed from the a
//	secret key shared with the TURN server and the returned username
//	value, by performing base64(hmac(secret key, username)).
//
// coturn (use-auth-secret) uses HMAC-SHA1, and so does avedge.

// MintREST returns a TURN REST credential, byte compatible with coturn's
// use-auth-secret: username "<unix-expiry>:<user>" (just "<unix-expiry>" when
// user is empty) and password base64(HMAC-SHA1(secret, username)).
func MintREST(secret []byte, user string, expiry time.Time) (username, password string) {
	return MintRESTSep(secret, user, expiry, DefaultSeparator)
}

// MintRESTSep is MintREST with a custom separator (coturn's
// rest-api-separator); "" means DefaultSeparator.
func MintRESTSep(secret []byte, user string, expiry time.Time, sep string) (username, password string) {
	if sep == "" {
		sep = DefaultSeparator
	}
	username = strconv.FormatInt(expiry.Unix(), 10)
	if user != "" {
		username += sep + user
	}
	return username, RESTPassword(secret, username)
}

// RESTPassword returns base64(HMAC-SHA1(secret, username)), the TURN REST
// password for username.
func RESTPassword(secret []byte, username string) string {
	sum := hmacSHA1String(secret, username)
	return base64.StdEncoding.EncodeToString(sum[:])
}
