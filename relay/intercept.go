//go:build linux

package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/policy"
)

// The interception both client facades apply between a client and pion, written once: the
// UDP listeners' facade (listenerGroup, udp.go) and the stream listeners' (framedConn,
// stream.go) call admitRequest on every STUN message before pion reads it and passAnswer on
// every message pion writes back.

// replier sends an answer of the relay's own to a client, past pion. It reports whether the
// answer went out (or was handed to the stream) rather than being refused because the
// facade is closed.
type replier interface {
	reply(to netip.AddrPort, b []byte) bool
	tupleEnd
}

// admitRequest reports whether pion should read STUN message m, which client from sent (src
// is the address pion will be given for it). An Allocate request over its source's rate is
// dropped and counted; while the relay drains with an alternate server configured, an
// Allocate request is answered 300 (Try Alternate) through r instead. Every message pion
// will read goes through the nonce check (nonce.go) and the key-rotation check
// (pioncompat.go) and, if it is a CreatePermission or ChannelBind, is noted for the
// per-allocation caps (caps.go).
func (s *Server) admitRequest(m []byte, from netip.AddrPort, src net.Addr, r replier) bool {
	if isAllocateRequest(m) {
		if lim := s.allocLimit; lim != nil && !lim.Allow(from.Addr(), time.Now().UnixNano()) {
			s.slowStats.Drop(dataplane.DropRateLimited)
			return false
		}
		if alt := s.cfg.AlternateServer; alt.IsValid() && s.draining.Load() {
			if resp := tryAlternateResponse(m, alt); resp != nil && r.reply(from, resp) {
				s.countAttempt(metrics.AttemptDraining)
			}
			return false
		}
	}
	if !s.bindRequestNonce(m, from, src, r) {
		s.checkRotation(m, src)
	}
	s.noteCapRequest(m, from, src, r)
	return true
}

// passAnswer returns what to send client to (at address ap, over r) in place of b, which
// pion wrote: a ChannelBind refused by the peer policy is answered 403
// (fixChannelBindRefusal), a CreatePermission or ChannelBind refused by the per-allocation
// caps 508 (capAnswer), an error or Binding answer over the client address's rate is not
// sent at all (ok false; counted: answerLimiter), and a NONCE pion issues leaves bound to the
// client's 5-tuple (nonce.go).
func (s *Server) passAnswer(b []byte, to net.Addr, ap netip.AddrPort, r tupleEnd) (out []byte, ok bool) {
	b = s.fixChannelBindRefusal(b, to)
	b = s.capAnswer(b, to)
	code := stunErrorCode(b)
	if lim := s.answerLimiter(b, code); lim != nil && !lim.Allow(ap.Addr(), time.Now().UnixNano()) {
		s.slowStats.Drop(dataplane.DropRateLimited)
		return nil, false
	}
	if code != 0 {
		b = s.bindAnswerNonce(b, ap, r)
	}
	return b, true
}

// answerLimiter returns the per-source limit answer b (with error code code, 0 if it is not
// an error) counts against, or nil. Every answer a spoofed request can draw is limited, so
// the relay reflects at most a bounded rate at any one address: 401 (UnauthorizedRate, also
// the password-guessing rate), every other error (ErrorRate), Binding successes
// (BindingRate). Success answers to TURN requests (which need a nonce bound to the client's
// 5-tuple, nonce.go) and Data indications are not limited.
func (s *Server) answerLimiter(b []byte, code int) *policy.Limiter {
	switch {
	case code == int(stun.CodeUnauthorized):
		return s.authLimit
	case code != 0:
		return s.errLimit
	case isBindingSuccess(b):
		return s.bindLimit
	}
	return nil
}

// tryAlternateResponse builds the 300 (Try Alternate) answer to an Allocate request, or nil
// if the request does not parse.
//
// RFC 8489 §10: "The ALTERNATE-SERVER attribute ... the server MUST include it in a 300
// (Try Alternate) error response"; RFC 8656 §7.2 lets the server redirect an Allocate
// request this way "if it wishes to redirect the client to a different server".
func tryAlternateResponse(req []byte, alt netip.AddrPort) []byte {
	m := &stun.Message{Raw: append([]byte(nil), req...)}
	if m.Decode() != nil {
		return nil
	}
	resp, err := stun.Build(&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeTryAlternate},
		&stun.AlternateServer{IP: alt.Addr().AsSlice(), Port: int(alt.Port())},
		stun.Fingerprint)
	if err != nil {
		return nil
	}
	return resp.Raw
}
