//go:build linux

package relay

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/relay/internal/dataplane"
)

// The challenge every allocation begins with, answered by the workers.
//
// RFC 8489 §9.2.4: "If the message does not contain a MESSAGE-INTEGRITY ... attribute, the
// server MUST generate an error response with an error code of 401 (Unauthorized). This
// response MUST include a REALM value ... [and] a NONCE." A client's first Allocate carries
// no credentials (it cannot: it learns REALM and NONCE from this answer), so half the
// requests of an allocation's setup need no state at all. Handed to pion, each cost a
// hand-off to a shard goroutine, pion's decode, its nonce, its answer, and our rewrite of that
// answer's nonce (nonce.go). The workers answer it themselves instead (challenge, called from
// dataplane's stunFromClient for clients without an allocation), with the bytes pion's answer
// leaves the relay with: ERROR-CODE 401 (without a reason phrase), NONCE (ours, bound to the client's
// 5-tuple), REALM; no FINGERPRINT.
//
// It is answered only when the relay would answer exactly that: an Allocate request for a
// UDP relay that pion's decoder accepts, that is under pion's read size, carries no
// MESSAGE-INTEGRITY and no comprehension-required attribute pion does not know (that draws a
// 420), while the relay is not draining and Config.Redirect names no alternate (an Allocate
// gets 300 then: admitRequest), and a pion nonce no older than
// pionNonceMaxAge is kept to put in place of ours when the client signs (bindRequestNonce);
// without one the request goes to pion, whose 401 brings a fresh one. The Allocate rate limit
// applies as in admitRequest.

// challengeMax is the size of the answer buffer the workers pass to challenge: header,
// ERROR-CODE, NONCE and a REALM of up to 763 bytes (RFC 8489 §14.9), padded.
const challengeMax = 1024

// pionInboundMTU is pion's read buffer (its InboundMTU default): a datagram this long or
// longer is dropped unread by pion's read loop.
const pionInboundMTU = 1600

// stunMagicCookie is the fixed second word of a STUN header (RFC 8489 §5).
const stunMagicCookie = 0x2112A442

// challenge writes to out the 401 answer to req, a STUN request from client from (without an
// allocation) to UDP listener lis, and returns its length; 0 hands req on to pion, -1 drops
// it (over the client's Allocate rate).
func (s *Server) challenge(lis uint16, req []byte, from netip.AddrPort, out []byte) int {
	if s.cfg.Validator == nil || !isAllocateRequest(req) || len(req) >= pionInboundMTU || s.draining.Load() ||
		int(lis) >= len(s.listeners) || !pionWouldChallenge(req) || !requestsUDP(req) {
		return 0
	}
	pn := s.pionNonce.Load()
	if pn == nil || s.nonces.now().Sub(pn.at) > pionNonceMaxAge {
		return 0
	}
	if s.cfg.Redirect != nil {
		// admitRequest answers 300 instead (alternateFor: not draining, a UDP client), and
		// spends the Allocate rate token there.
		if _, ok := s.cfg.Redirect(from, false); ok {
			return 0
		}
	}
	realm := s.cfg.Realm
	n := stunHeaderSize + 4 + 4 + 4 + nonceLen + 4 + (len(realm)+3)&^3
	if n > len(out) {
		return 0
	}
	if lim := s.allocLimit; lim != nil && !lim.Allow(from.Addr(), time.Now().UnixNano()) {
		return -1
	}
	nonce := s.nonces.mint(false, s.listeners[lis].addr, from)
	binary.BigEndian.PutUint16(out[0:2], allocateError)
	binary.BigEndian.PutUint16(out[2:4], uint16(n-stunHeaderSize))
	copy(out[4:stunHeaderSize], req[4:stunHeaderSize]) // magic cookie, transaction ID
	off := putAttr(out, stunHeaderSize, stun.AttrErrorCode, 4)
	out[off], out[off+1], out[off+2], out[off+3] = 0, 0, 4, 1 // class 4, number 01 (RFC 8489 §14.8); pion writes no reason phrase
	off = putAttr(out, off+4, stun.AttrNonce, nonceLen)
	copy(out[off:], nonce)
	off = putAttr(out, off+nonceLen, stun.AttrRealm, len(realm))
	off += copy(out[off:], realm)
	for ; off < n; off++ {
		out[off] = 0
	}
	return n
}

var allocateError = stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse).Value()

// putAttr writes an attribute header of type t and value length l at off and returns the
// offset of the value.
func putAttr(b []byte, off int, t stun.AttrType, l int) int {
	binary.BigEndian.PutUint16(b[off:], uint16(t))
	binary.BigEndian.PutUint16(b[off+2:], uint16(l))
	return off + 4
}

// requestsUDP reports whether Allocate request m asks for a UDP relay (REQUESTED-TRANSPORT
// 17). Anything else (TCP, refused or served by admitRequest and the TCP relay; none, which
// pion refuses after authentication) is left to the control plane.
func requestsUDP(m []byte) bool {
	off, l, ok := findAttr(m, stun.AttrRequestedTransport)
	return ok && l >= 1 && m[off] == udpProtocol
}

// udpProtocol is REQUESTED-TRANSPORT's protocol number for UDP (RFC 8656 §14.7).
const udpProtocol = 17

// pionWouldChallenge reports whether pion's decoder accepts STUN request m (magic cookie,
// every attribute, padded, within the length), m has no MESSAGE-INTEGRITY and every
// comprehension-required attribute of it is one pion knows: then pion's only answer to an
// Allocate is the 401 challenge.
func pionWouldChallenge(m []byte) bool {
	return dataplane.WalkSTUN(m, func(t uint16) bool {
		return t != uint16(stun.AttrMessageIntegrity) && t != uint16(stun.AttrMessageIntegritySHA256) &&
			(t >= 0x8000 || pionKnows(t))
	})
}

// pionKnows is stun.AttrType.Known (which builds a map of every attribute's name on each
// call), remembered per type: bit t of known is set before bit t of checked.
func pionKnows(t uint16) bool {
	i, bit := t/64, uint64(1)<<(t%64)
	if knownAttrs.checked[i].Load()&bit != 0 {
		return knownAttrs.known[i].Load()&bit != 0
	}
	k := stun.AttrType(t).Known()
	if k {
		knownAttrs.known[i].Or(bit)
	}
	knownAttrs.checked[i].Or(bit)
	return k
}

// knownAttrs caches pionKnows for the comprehension-required types (below 0x8000).
var knownAttrs struct{ checked, known [0x8000 / 64]atomic.Uint64 }
