//go:build linux

package dataplane

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"time"

	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/policy"
)

// STUN requests from clients: what the workers do before (and instead of) queueing them for
// the control plane, so that floods stay off live calls.
//
//   - A plain Binding request is answered here, statelessly, as pion would answer it, within
//     the client address's Binding answer limit (Config.BindingLimit, the limiter pion's
//     Binding answers count against too).
//   - The 401 challenge that begins every allocation is answered here too, by the relay's
//     Config.Challenge (relay/challenge.go), when the control plane would answer only that.
//   - A request from a client with a live allocation (the fast-path table knows its 5-tuple)
//     goes to its shard's priority lane, ahead of new work.
//   - Anything else from a client without an allocation spends a token of the client
//     address's request limit first (Config.RequestLimit).

// stunFromClient handles a STUN message (size ≥ 20 bytes, first two bits 0) that client from
// sent to listen address lis.
func (w *Worker) stunFromClient(lis *Listener, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) (int, []byte, *sock.RawAddr) {
	d := buf[headroom : headroom+size]
	binding := isBindingRequest(d)
	if binding {
		w.stats.binding.Add(1)
	}
	if binding && isPlainBinding(d) {
		if !allow(w.bindLim, from.Addr()) {
			return w.drop(DropRateLimited)
		}
		n := writeBindingSuccess(buf[headroom:], from)
		to := &w.replyTo[w.replyNext]
		w.replyNext = (w.replyNext + 1) % len(w.replyTo)
		to.Set(from)
		w.stats.bindingAnswers.Add(1)
		return w.lisSocks[lis.ID].fd, buf[headroom : headroom+n], to
	}
	live := w.fast.Lookup(Key{Lis: lis.ID, Client: from}) != nil
	if !live && !allow(w.limit, from.Addr()) {
		return w.drop(DropRateLimited)
	}
	if !live && w.chal != nil {
		switch n := w.chal(lis.ID, d, from, w.chalBuf[:]); {
		case n < 0:
			return w.drop(DropRateLimited)
		case n > 0 && n <= bufSize:
			copy(buf[headroom:], w.chalBuf[:n])
			to := &w.replyTo[w.replyNext]
			w.replyNext = (w.replyNext + 1) % len(w.replyTo)
			to.Set(from)
			w.stats.challenges.Add(1)
			return w.lisSocks[lis.ID].fd, buf[headroom : headroom+n], to
		}
	}
	q := lis.Shard(from)
	if live {
		if !q.PushLive(d, from) {
			return w.drop(DropQueueFull)
		}
		return 0, nil, nil
	}
	return w.handoff(q, d, from)
}

// allow spends one of ip's tokens of lim (nil: unlimited).
func allow(lim *policy.Limiter, ip netip.Addr) bool {
	return lim == nil || lim.Allow(ip, time.Now().UnixNano())
}

// STUN constants (RFC 8489 §5, §14).
const (
	magicCookie       = 0x2112A442
	bindingSuccess    = 0x0101
	attrXORMapped     = 0x0020
	attrFingerprint   = 0x8028
	fingerprintXOR    = 0x5354554e
	stunHeader        = 20
	bindingAnswerMax  = stunHeader + 4 + 20 + 8 // XOR-MAPPED-ADDRESS of an IPv6 address, FINGERPRINT
	comprehensionOpt  = 0x8000                  // attribute types from here on are comprehension-optional
	fingerprintLength = 4
)

// isPlainBinding reports whether d is a Binding request the worker may answer itself: one
// that pion's decoder accepts (magic cookie, attributes within the length) and that carries
// only comprehension-optional attributes (SOFTWARE, FINGERPRINT, …). One with
// MESSAGE-INTEGRITY, USERNAME or any other comprehension-required attribute, known or not, is
// left to pion, which answers it as before (a 420 for an unknown one).
//
// RFC 8489 §6.3.1 (and §7.3.1): a Binding request needs no state; "the server MUST ... [use]
// the source transport address of the request" in XOR-MAPPED-ADDRESS.
func isPlainBinding(d []byte) bool {
	return len(d) >= stunHeader && binary.BigEndian.Uint16(d[0:2]) == BindingRequest &&
		WalkSTUN(d, func(t uint16) bool { return t >= comprehensionOpt })
}

// WalkSTUN reports whether d is a STUN message pion's decoder accepts (magic cookie; the
// message length within d; every attribute's header and padded value within the message
// length) and ok holds for the type of every attribute in it, in order, stopping at the first
// for which it does not.
func WalkSTUN(d []byte, ok func(t uint16) bool) bool {
	if len(d) < stunHeader || binary.BigEndian.Uint32(d[4:8]) != magicCookie {
		return false
	}
	size := int(binary.BigEndian.Uint16(d[2:4]))
	if stunHeader+size > len(d) {
		return false
	}
	a := d[stunHeader : stunHeader+size]
	for off := 0; off < size; {
		if size-off < 4 {
			return false
		}
		t := binary.BigEndian.Uint16(a[off:])
		l := int(binary.BigEndian.Uint16(a[off+2:]))
		off += 4 + (l+3)&^3
		if off > size || !ok(t) {
			return false
		}
	}
	return true
}

// writeBindingSuccess writes, over the Binding request at the start of b (whose header it
// keeps: magic cookie and transaction ID), the success answer pion writes: XOR-MAPPED-ADDRESS
// of from, then FINGERPRINT. It returns the answer's length. b must hold bindingAnswerMax
// bytes.
//
// RFC 8489 §14.2: X-Port is the port XORed with the most significant 16 bits of the magic
// cookie; X-Address, for IPv4, the address XORed with the magic cookie, for IPv6, with the
// concatenation of the magic cookie and the transaction ID. §14.7: FINGERPRINT is the CRC-32
// of the message up to (not including) itself, XORed with 0x5354554e, computed with the
// header's length already covering it.
func writeBindingSuccess(b []byte, from netip.AddrPort) int {
	_ = b[bindingAnswerMax-1]
	ip := from.Addr().Unmap()
	alen := 16
	family := byte(2)
	if ip.Is4() {
		alen, family = 4, 1
	}
	binary.BigEndian.PutUint16(b[0:2], bindingSuccess)
	binary.BigEndian.PutUint16(b[2:4], uint16(4+4+alen+4+fingerprintLength))
	x := b[stunHeader:]
	binary.BigEndian.PutUint16(x[0:2], attrXORMapped)
	binary.BigEndian.PutUint16(x[2:4], uint16(4+alen))
	x[4] = 0
	x[5] = family
	binary.BigEndian.PutUint16(x[6:8], from.Port()^(magicCookie>>16))
	if alen == 4 {
		v := ip.As4()
		binary.BigEndian.PutUint32(x[8:12], binary.BigEndian.Uint32(v[:])^magicCookie)
	} else {
		v := ip.As16()
		// The magic cookie and transaction ID are b[4:20], still in place.
		for i := range v {
			x[8+i] = v[i] ^ b[4+i]
		}
	}
	n := stunHeader + 8 + alen
	binary.BigEndian.PutUint16(b[n:], attrFingerprint)
	binary.BigEndian.PutUint16(b[n+2:], fingerprintLength)
	binary.BigEndian.PutUint32(b[n+4:], crc32.ChecksumIEEE(b[:n])^fingerprintXOR)
	return n + 8
}
