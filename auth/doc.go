// Package auth owns avedge's credentials: it mints, validates and rotates the
// time-limited username/password pairs the relay accepts, and it serves them
// over HTTP as the media relay authentication service (MRAS).
//
// # Credential shapes
//
// All credentials are derived from secrets shared between the credential
// service and the relays (a Keyring, newest secret first), so any relay of a
// pool validates any credential without a lookup or shared state.
//
// TURN REST (coturn use-auth-secret, byte compatible), for WebRTC apps:
//
//	rest-username = expiry [ SEP user ]        ; SEP is ":" unless configured
//	expiry        = 1*19DIGIT                  ; unix seconds
//	password      = base64(HMAC-SHA1(secret, rest-username))
//
// The key that signed a REST username is not named in it, so the relay tries
// every live secret: Lookup returns one candidate password per secret.
//
// Keyed (MRAS-issued) usernames carry the key id and bind identity and expiry
// into the signed string:
//
//	keyed-username = "mras1:" key-id ":" expiry ":" identity64
//	key-id         = 1*16( ALPHA / DIGIT / "-" / "_" )
//	expiry         = "0" / %x31-39 0*18DIGIT   ; unix seconds, no leading zero
//	identity64     = *344( ALPHA / DIGIT / "-" / "_" )
//	                 ; base64url without padding (RFC 4648 section 5) of
//	                 ; the identity, at most 256 bytes of UTF-8, no controls
//	password       = base64(HMAC-SHA256(secret[key-id], keyed-username))
//
// A REST username starts with a digit and a keyed one with "m", so the two can
// never be confused, and because each password is an HMAC over the whole
// username one can never stand in for the other. The relay validates a keyed
// username with exactly one password, that of the key it names; once that key
// is removed from the keyring the username gets ErrUnknownKey.
//
// Static long-term users (name:password, as coturn's user=) serve small setups.
//
// Every username is bounded (1..512 bytes, valid UTF-8, no control
// characters) before it is parsed.
//
// # Validation
//
// Validator.Lookup parses a username and returns the candidate passwords; it
// never sees the client's password. The relay derives the long-term key
// (RFC 8489 section 9.2.2) from each candidate and checks MESSAGE-INTEGRITY,
// so HMACs are compared in constant time by the STUN layer, never here.
//
// # Credential service
//
// Service is an http.Handler: POST /mras answers an [MS-AVEDGEA]
// credentialsRequest with a credentialsResponse (keyed usernames and the
// relay list); GET or POST /credentials answers in the de-facto TURN REST JSON
// shape, also with keyed usernames so that rotation is exact. Callers present
// an API key as a bearer token unless AllowAnonymous is set explicitly.
package auth
