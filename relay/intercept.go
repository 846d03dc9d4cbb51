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
	// request is the facade's record of the request its pion read loop is handling.
	request() *pendingRequest
}

// pendingRequest is what passAnswer needs to know of the request pion is answering: its
// transaction ID and whether it carried MESSAGE-INTEGRITY. pion reads a request and writes
// its answer on one goroutine, the facade's read loop (one per UDP shard, one per stream
// connection), before it reads the next: admitRequest notes each request there and
// passAnswer reads the note there. Owned by that read loop.
type pendingRequest struct {
	txid     [stun.TransactionIDSize]byte
	unsigned bool
}

// note records m, a request pion is about to read.
func (p *pendingRequest) note(m []byte) {
	if len(m) < stunHeaderSize {
		*p = pendingRequest{}
		return
	}
	copy(p.txid[:], m[8:stunHeaderSize])
	_, _, signed := findAttrHeader(m, stun.AttrMessageIntegrity)
	p.unsigned = !signed
}

// challenge reports whether answer (a 401) answers the noted request and that request
// carried no MESSAGE-INTEGRITY: the challenge every TURN client's first request draws (RFC
// 8489 §9.2.4: "If the message does not contain a MESSAGE-INTEGRITY ... attribute, the server
// MUST generate an error response with an error code of 401"), not an authentication
// failure.
func (p *pendingRequest) challenge(answer []byte) bool {
	return p.unsigned && len(answer) >= stunHeaderSize && [stun.TransactionIDSize]byte(answer[8:stunHeaderSize]) == p.txid
}

// admitRequest reports whether pion should read STUN message m, which client from sent (src
// is the address pion will be given for it). An Allocate request over its source's rate is
// dropped and counted; one the relay redirects (alternateFor) is answered 300 (Try
// Alternate) through r instead. Every message pion
// will read goes through the nonce check (nonce.go) and the key-rotation check
// (pioncompat.go) and, if it is a CreatePermission or ChannelBind, is noted for the
// per-allocation caps (caps.go).
func (s *Server) admitRequest(m []byte, from netip.AddrPort, src net.Addr, r replier) bool {
	if isAllocateRequest(m) {
		if lim := s.allocLimit; lim != nil && !lim.Allow(from.Addr(), time.Now().UnixNano()) {
			s.slowStats.Drop(dataplane.DropRateLimited)
			return false
		}
		if alt, reason, ok := s.alternateFor(from, src); ok {
			if resp := tryAlternateResponse(m, alt); resp != nil && r.reply(from, resp) {
				if reason == metrics.RedirectDraining {
					s.countAttempt(metrics.AttemptDraining)
				}
				s.cfg.Metrics.Redirect(reason)
			}
			return false
		}
		if s.refuseTCPAllocate(m, from, r) {
			return false
		}
	}
	if !s.bindRequestNonce(m, from, src, r) {
		s.checkRotation(m, src)
	}
	if s.answerMismatch(m, from, src, r) { // mismatch.go: 437 for an ended allocation
		return false
	}
	r.request().note(m)
	s.noteCapRequest(m, from, src, r)
	s.noteConnect(m, src)
	return true
}

// alternateFor returns the server to name in a 300 (Try Alternate) answer to an Allocate
// request from client (src: its address as pion sees it, a *net.UDPAddr over UDP), and the
// redirect's reason, or ok false to let pion handle the request. While the relay drains: the
// configured AlternateServer, else Redirect's choice; otherwise Redirect's choice (the relay
// is over its load threshold). Redirect is asked about UDP clients only.
//
// RFC 8489 §10 guards the client against loops ("If the client has been redirected to a
// server to which it has already sent this request within the last five minutes, it MUST
// ignore the redirection"); Redirect guards the pool: it never names this relay nor a relay
// over the threshold, so a redirected client is not sent on again unless the relay it
// reached is itself over.
func (s *Server) alternateFor(client netip.AddrPort, src net.Addr) (alt netip.AddrPort, reason string, ok bool) {
	draining := s.draining.Load()
	reason = metrics.RedirectOverloaded
	if draining {
		reason = metrics.RedirectDraining
		if alt := s.cfg.AlternateServer; alt.IsValid() {
			return alt, reason, true
		}
	}
	if s.cfg.Redirect == nil {
		return netip.AddrPort{}, "", false
	}
	if _, udp := src.(*net.UDPAddr); !udp {
		return netip.AddrPort{}, "", false
	}
	alt, ok = s.cfg.Redirect(client, draining)
	if !ok || !alt.IsValid() {
		return netip.AddrPort{}, "", false
	}
	return alt, reason, true
}

// passAnswer returns what to send client to (at address ap, over r) in place of b, which
// pion wrote: a ChannelBind refused by the peer policy is answered 403
// (fixChannelBindRefusal), a CreatePermission or ChannelBind refused by the per-allocation
// caps 508 (capAnswer), an error or Binding answer over the client address's rate is not
// sent at all (ok false; counted: answerLimiter), and a NONCE pion issues leaves bound to the
// client's 5-tuple (nonce.go).
func (s *Server) passAnswer(b []byte, to net.Addr, ap netip.AddrPort, r replier) (out []byte, ok bool) {
	b = s.fixChannelBindRefusal(b, to)
	b = s.capAnswer(b, to)
	s.forgetConnect(b, to)
	s.noteConnectionID(b, ap)
	code := stunErrorCode(b)
	if lim := s.answerLimiter(b, code, r.request()); lim != nil && !lim.Allow(ap.Addr(), time.Now().UnixNano()) {
		s.slowStats.Drop(dataplane.DropRateLimited)
		return nil, false
	}
	if code != 0 {
		b = s.bindAnswerNonce(b, ap, r)
	} else {
		s.noteLifetime(b, to, r) // admin.go
	}
	return b, true
}

// answerLimiter returns the per-source limit answer b (with error code code, 0 if it is not
// an error) counts against, or nil. Every answer a spoofed request can draw is limited, so
// the relay reflects at most a bounded rate at any one address: a 401 to a signed request
// (UnauthorizedRate: the password-guessing rate), every other error (ErrorRate), Binding
// successes (BindingRate). The 401 challenge to an unsigned request is not limited here:
// every allocation begins with one, so a limit per source address would cap how fast the
// clients behind one NAT can allocate (it did: ~100 allocations/s), and the requests that
// draw it are already limited per source on the way in (AllocateRate, RequestRate). Success
// answers to TURN requests (which need a nonce bound to the client's 5-tuple, nonce.go) and
// Data indications are not limited.
func (s *Server) answerLimiter(b []byte, code int, req *pendingRequest) *policy.Limiter {
	switch {
	case code == int(stun.CodeUnauthorized):
		if req.challenge(b) {
			return nil
		}
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
