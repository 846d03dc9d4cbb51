//go:build linux

package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
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
}

// admitRequest reports whether pion should read STUN message m, which client from sent (src
// is the address pion will be given for it). An Allocate request over its source's rate is
// dropped and counted; while the relay drains with an alternate server configured, an
// Allocate request is answered 300 (Try Alternate) through r instead. Every message pion
// will read goes through the key-rotation check (pioncompat.go) and, if it is a
// CreatePermission or ChannelBind, is noted for the per-allocation caps (caps.go).
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
	s.checkRotation(m, src)
	s.noteCapRequest(m, src, r)
	return true
}

// passAnswer returns what to send client to (at address ip) in place of b, which pion wrote:
// a ChannelBind refused by the peer policy is answered 403 (fixChannelBindRefusal), a
// CreatePermission or ChannelBind refused by the per-allocation caps 508 (capAnswer), and a
// 401 over the client address's rate is not sent at all (ok false; counted).
func (s *Server) passAnswer(b []byte, to net.Addr, ip netip.Addr) (out []byte, ok bool) {
	b = s.fixChannelBindRefusal(b, to)
	b = s.capAnswer(b, to)
	if lim := s.authLimit; lim != nil && stunErrorCode(b) == int(stun.CodeUnauthorized) && !lim.Allow(ip, time.Now().UnixNano()) {
		s.slowStats.Drop(dataplane.DropRateLimited)
		return nil, false
	}
	return b, true
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
