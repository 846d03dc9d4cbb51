//go:build linux

package relay

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
)

// dropReason is why a packet was not relayed. Its string doubles as the metric label.
type dropReason uint8

const (
	dropNoAllocation dropReason = iota // ChannelData from a client with no allocation here
	dropNoChannel                      // ChannelData on a channel number that is not bound
	dropNoPermission                   // peer packet, or channel whose permission expired
	dropMalformed                      // neither STUN nor a well-formed ChannelData
	dropTooLarge                       // truncated: larger than our buffers
	dropQueueFull                      // pion could not keep up with its share
	dropSendError                      // the kernel refused the send (buffer full, unreachable)
	dropPolicy                         // peer refused by the peer policy
	dropQuota                          // bandwidth cap
	dropRateLimited                    // Allocate request or 401 answer over its per-source rate
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	metrics.DropNoAllocation, metrics.DropNoChannel, metrics.DropNoPermission, metrics.DropMalformed,
	metrics.DropTooLarge, metrics.DropQueueFull, metrics.DropSendError, metrics.DropPolicy, metrics.DropQuota,
	metrics.DropRateLimited,
}

func (r dropReason) String() string { return dropReasonNames[r] }

const (
	dirClientToPeer = 0
	dirPeerToClient = 1
	pathChannel     = 0
	pathIndication  = 1
)

// readSock drains a ready socket in batches and handles each datagram.
func (w *worker) readSock(s *loopSock) {
	for round := 0; round < maxReadsPerSocket; round++ {
		if ringSize-w.next < batchSize {
			w.flush()
		}
		k := batchSize
		base := w.next
		for i := 0; i < k; i++ {
			buf := &w.bufs[base+i]
			w.riovs[i].Base = &buf[headroom]
			w.riovs[i].SetLen(bufSize)
			w.rmsgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
			w.rmsgs[i].Hdr.Flags = 0
		}
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&w.rmsgs[0])),
			uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			// EAGAIN: drained. Anything else (an ICMP error reported on the socket) is not
			// fatal for a UDP socket: try again next time it is ready.
			return
		}
		n := int(r)
		for i := 0; i < n; i++ {
			buf := &w.bufs[base+i]
			size := int(w.rmsgs[i].Len)
			if w.rmsgs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				w.stats.drops[dropTooLarge].Add(1)
				continue
			}
			from := sock.Decode(&w.rnames[i])
			switch s.kind {
			case kindListener:
				w.fromClient(s, buf, size, from)
			case kindRelay:
				w.fromPeer(s.rc, buf, size, from)
			}
		}
		w.next = base + n
		if n < k {
			return // the socket is drained; epoll says when more arrives
		}
	}
}

// fromClient handles a datagram that a client sent to a listen address.
//
// RFC 8656 §12: the first two bits of a ChannelData message are 0b01 (channel numbers
// 0x4000 through 0x4FFF), while those of a STUN message are 0b00, so one byte tells them
// apart.
func (w *worker) fromClient(s *loopSock, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) {
	d := buf[headroom : headroom+size]
	if size >= 4 && d[0]&0xC0 == 0x40 {
		// RFC 8656 §12.5: "If the ChannelData message is received in a UDP datagram, and if
		// the UDP datagram is too short to contain the claimed length of the ChannelData
		// message (i.e., the UDP datagram is shorter than [Length field + 4]), then the
		// message is silently discarded." Padding after the data is allowed and ignored.
		num := binary.BigEndian.Uint16(d[0:2])
		length := int(binary.BigEndian.Uint16(d[2:4]))
		if 4+length > size {
			w.stats.drops[dropMalformed].Add(1)
			return
		}
		a := w.srv.fast.lookup(fastKey{lis: s.lis.id, client: from})
		if a == nil {
			w.stats.drops[dropNoAllocation].Add(1)
			return
		}
		// RFC 8656 §12.4: "If the ChannelData message is received on a channel that is not
		// bound to any peer, then the message is silently discarded." … "the server MUST
		// also check that there is a permission installed for the peer's IP address; if not,
		// the message is silently discarded."
		ch := a.chanByNum(num)
		if ch == nil {
			w.stats.drops[dropNoChannel].Add(1)
			return
		}
		if !a.permitted(ch.peer.Addr()) {
			w.stats.drops[dropNoPermission].Add(1)
			return
		}
		if ch.refused {
			w.stats.drops[dropPolicy].Add(1)
			return
		}
		if a.relay.limited(length) {
			w.stats.drops[dropQuota].Add(1)
			return
		}
		w.queue(a.relay.fd, d[4:4+length], &ch.raw)
		t := &w.stats.traffic[dirClientToPeer][pathChannel]
		t.packets.Add(1)
		t.bytes.Add(uint64(length))
		return
	}
	if size >= 20 && d[0]&0xC0 == 0 {
		// STUN: pion's. Count Binding requests (type 0x0001) on the way.
		if d[0] == 0 && d[1] == 1 {
			w.stats.binding.Add(1)
		}
		if !s.lis.handoff(d, from) {
			w.stats.drops[dropQueueFull].Add(1)
		}
		return
	}
	w.stats.drops[dropMalformed].Add(1)
}

// fromPeer handles a datagram that a peer sent to a relay address.
//
// RFC 8656 §11.3 / §12.6: when the relay receives a UDP datagram from a peer, it first checks
// for a permission for the peer's IP address (none: "silently discarded"); then, if a
// channel is bound to the peer's transport address, it sends the data to the client in a
// ChannelData message, else in a Data indication.
func (w *worker) fromPeer(rc *relayConn, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) {
	a := rc.fa.Load()
	if a == nil || !a.udp {
		// Not (yet) an allocation of a UDP listener of ours: pion decides.
		if a != nil && !a.permitted(from.Addr()) {
			w.stats.drops[dropNoPermission].Add(1)
			return
		}
		if !rc.handoff(buf[headroom:headroom+size], from) {
			w.stats.drops[dropQueueFull].Add(1)
		}
		return
	}
	if !a.permitted(from.Addr()) {
		w.stats.drops[dropNoPermission].Add(1)
		return
	}
	if rc.limited(size) {
		w.stats.drops[dropQuota].Add(1)
		return
	}
	ch := a.chanByPeer(from)
	if ch == nil {
		// A permission but no channel: pion wraps it in a Data indication.
		if !rc.handoff(buf[headroom:headroom+size], from) {
			w.stats.drops[dropQueueFull].Add(1)
		}
		return
	}
	// The ChannelData header goes into the headroom in front of the payload: no copy.
	binary.BigEndian.PutUint16(buf[0:2], ch.num)
	binary.BigEndian.PutUint16(buf[2:4], uint16(size))
	w.queue(w.lisSocks[a.key.lis].fd, buf[:headroom+size], &a.clientRaw)
	t := &w.stats.traffic[dirPeerToClient][pathChannel]
	t.packets.Add(1)
	t.bytes.Add(uint64(size))
}
