//go:build linux

package relay

import (
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// authenticate is pion's AuthHandler: it looks the username up (expiry, key id, static user)
// and returns the long-term key, MD5(username ":" realm ":" password) (RFC 8489 §9.2.2),
// that pion checks MESSAGE-INTEGRITY with. Unknown, expired and malformed usernames, and
// static users locked out after too many wrong passwords, get 401 with a fresh nonce from
// pion and are counted by reason; they never reach an allocation.
func (s *Server) authenticate(ra *turn.RequestAttributes) (string, []byte, bool) {
	cred, err := s.cfg.Validator.Lookup(ra.Username)
	if err != nil {
		reason := auth.Reason(err)
		if m := s.cfg.Metrics; m != nil {
			m.AuthFailure(reason)
			if ra.Method == stun.MethodAllocate {
				m.AllocationAttempt(metrics.AttemptAuth)
			}
		}
		s.logInput(reason, "authentication failed", "client", ra.SrcAddr.String(), "method", ra.Method.String())
		return "", nil, false
	}
	if isStaticUser(cred) && s.lockout.Locked(ra.Username, time.Now().UnixNano()) {
		// Too many wrong passwords lately (requestKey counts them): refused whatever the
		// password, so that guessing runs at most StaticUserFailures tries per
		// StaticUserLockout, from however many addresses.
		if m := s.cfg.Metrics; m != nil {
			m.AuthFailure(metrics.AuthLockedOut)
			if ra.Method == stun.MethodAllocate {
				m.AllocationAttempt(metrics.AttemptAuth)
			}
		}
		s.logInput(metrics.AuthLockedOut, "authentication failed", "client", ra.SrcAddr.String(), "method", ra.Method.String())
		return "", nil, false
	}
	if s.revokedCredential(ra.Username, cred.UserID) {
		// Revoked through the admin API or the revocations file (admin.go): refused like
		// an expired credential until the revocation lapses.
		if m := s.cfg.Metrics; m != nil {
			m.AuthFailure(metrics.AuthRevoked)
			if ra.Method == stun.MethodAllocate {
				m.AllocationAttempt(metrics.AttemptAuth)
			}
		}
		s.logInput(metrics.AuthRevoked, "authentication failed", "client", ra.SrcAddr.String(), "method", ra.Method.String(), "user", cred.UserID)
		return "", nil, false
	}
	key := turn.GenerateAuthKey(ra.Username, ra.Realm, s.rotationPassword(ra, cred.Passwords))
	s.rememberBindKey(ra, key)
	return cred.UserID, key, true
}

// isStaticUser reports whether cred is a configured static user's (one password, no key id,
// no expiry), the only credentials whose passwords a person chose and a guesser might find.
func isStaticUser(cred auth.Credential) bool {
	return len(cred.KeyIDs) == 1 && cred.KeyIDs[0] == "" && cred.Expiry.IsZero()
}
