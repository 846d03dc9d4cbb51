//go:build linux

package dataplane

import (
	"encoding/binary"
	"net/netip"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
)

// Classification: what to do with one datagram, the same code for both loops. Each handler
// does exactly one of three things: it returns a send (to != nil: b goes to "to" through
// socket fd, and the traffic is counted), hands the datagram to the control plane (pushes it
// on a hand-off queue), or counts a drop. The loop that called it does the send.

// classify dispatches a datagram received on s.
func (w *Worker) classify(s *loopSock, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) (fd int, b []byte, to *sock.RawAddr) {
	switch s.kind {
	case kindListener:
		return w.fromClient(s.lis, buf, size, from)
	case kindRelay:
		return w.fromPeer(s.rc, buf, size, from)
	}
	return 0, nil, nil
}

// fromClient handles a datagram that a client sent to listen address lis.
//
// RFC 8656 §12: the first two bits of a ChannelData message are 0b01 (channel numbers
// 0x4000 through 0x4FFF), while those of a STUN message are 0b00, so one byte tells them
// apart.
func (w *Worker) fromClient(lis *Listener, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) (int, []byte, *sock.RawAddr) {
	d := buf[headroom : headroom+size]
	if size >= 4 && d[0]&0xC0 == 0x40 {
		// RFC 8656 §12.5: "If the ChannelData message is received in a UDP datagram, and if
		// the UDP datagram is too short to contain the claimed length of the ChannelData
		// message (i.e., the UDP datagram is shorter than [Length field + 4]), then the
		// message is silently discarded." Padding after the data is allowed and ignored.
		num := binary.BigEndian.Uint16(d[0:2])
		length := int(binary.BigEndian.Uint16(d[2:4]))
		if 4+length > size {
			return w.drop(DropMalformed)
		}
		a := w.fast.Lookup(Key{Lis: lis.ID, Client: from})
		if a == nil {
			return w.drop(DropNoAllocation)
		}
		// RFC 8656 §12.4: "If the ChannelData message is received on a channel that is not
		// bound to any peer, then the message is silently discarded." … "the server MUST
		// also check that there is a permission installed for the peer's IP address; if not,
		// the message is silently discarded."
		ch := a.ChanByNum(num)
		if ch == nil {
			return w.drop(DropNoChannel)
		}
		if !ch.Permitted() {
			return w.drop(DropNoPermission)
		}
		if ch.Refused {
			return w.drop(DropPolicy)
		}
		if a.Relay.Limited(length) {
			return w.drop(DropQuota)
		}
		w.stats.count(metrics.ClientToPeer, metrics.PathChannel, length)
		a.Relay.Traffic.Count(metrics.ClientToPeer, length)
		return a.Relay.FD, d[4 : 4+length], &ch.Raw
	}
	if size >= 20 && d[0]&0xC0 == 0 {
		return w.stunFromClient(lis, buf, size, from) // binding.go
	}
	return w.drop(DropMalformed)
}

// fromPeer handles a datagram that a peer sent to relay socket rc.
//
// RFC 8656 §11.3 / §12.6: when the relay receives a UDP datagram from a peer, it first checks
// for a permission for the peer's IP address (none: "silently discarded"); then, if a
// channel is bound to the peer's transport address, it sends the data to the client in a
// ChannelData message, else in a Data indication.
func (w *Worker) fromPeer(rc *Relay, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) (int, []byte, *sock.RawAddr) {
	a := rc.Alloc.Load()
	if a == nil || !a.UDP {
		// Not (yet) an allocation of a UDP listener of ours: the control plane decides.
		if a != nil && !a.Permitted(from.Addr()) {
			return w.drop(DropNoPermission)
		}
		return w.handoff(&rc.HandoffQueue, buf[headroom:headroom+size], from)
	}
	// A bound channel carries its peer IP's permission: one lookup for the common case.
	ch := a.ChanFromPeer(from)
	if ch == nil {
		if !a.Permitted(from.Addr()) {
			return w.drop(DropNoPermission)
		}
		if rc.Limited(size) {
			return w.drop(DropQuota)
		}
		// A permission but no channel: pion wraps it in a Data indication.
		return w.handoff(&rc.HandoffQueue, buf[headroom:headroom+size], from)
	}
	if !ch.Permitted() {
		return w.drop(DropNoPermission)
	}
	if rc.Limited(size) {
		return w.drop(DropQuota)
	}
	// The ChannelData header goes into the headroom in front of the payload: no copy.
	binary.BigEndian.PutUint16(buf[0:2], ch.Num)
	binary.BigEndian.PutUint16(buf[2:4], uint16(size))
	w.stats.count(metrics.PeerToClient, metrics.PathChannel, size)
	rc.Traffic.Count(metrics.PeerToClient, size)
	return w.lisSocks[a.Key.Lis].fd, buf[:headroom+size], &a.ClientRaw
}

// drop counts a dropped datagram and returns no send.
func (w *Worker) drop(r DropReason) (int, []byte, *sock.RawAddr) {
	w.stats.drops[r].Add(1)
	return 0, nil, nil
}

// handoff queues d for the control plane (or counts it dropped if the queue is full) and
// returns no send.
func (w *Worker) handoff(q *HandoffQueue, d []byte, from netip.AddrPort) (int, []byte, *sock.RawAddr) {
	if !q.Push(d, from) {
		return w.drop(DropQueueFull)
	}
	return 0, nil, nil
}

// BindingRequest is the message type of a STUN Binding request (RFC 8489 §18.2: method
// 0x001, class request), the first two bytes of one. The data plane counts them; it does not
// import pion, so the relay's tests check this against pion/stun's constant.
const BindingRequest = 0x0001

func isBindingRequest(d []byte) bool { return binary.BigEndian.Uint16(d[0:2]) == BindingRequest }
