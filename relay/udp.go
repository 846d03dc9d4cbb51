//go:build linux

package relay

import (
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
)

// listenerGroup is one UDP listen address: a SO_REUSEPORT socket in every worker, and its
// shards, the net.PacketConns pion reads STUN/TURN requests from and writes its answers to.
type listenerGroup struct {
	*dataplane.Listener                  // the workers' side: ID (index in Server.listeners) and the shards' queues. Static.
	addr                netip.AddrPort   // Static.
	laddr               net.Addr         // addr, made once: pion asks for it on every authenticated request (as net.UDPConn, the same value each time). Static.
	srv                 *Server          // Static.
	sendFD              int              // the socket pion's answers leave from (worker 0's). Static after start.
	shards              []*listenerShard // one per dataplane.Listener.Shards. Static.
}

// listenerShard is one shard of a listen address: the net.PacketConn of one pion read loop
// and allocation manager, fed by its own hand-off queue. The workers send each client's
// requests, and those of every port of its IP address, to the same shard
// (dataplane.Listener.Shard), so a busy shard (a flood from some
// addresses) stalls no other, and each keeps pion's guarantee that one client's requests are
// handled in order on one goroutine (pioncompat.go relies on it).
//
// The requests of clients without an allocation (new work: Allocates, and whatever a flood
// sends) are handled by at most Server.newWork shards at a time, all listeners together: the
// shard holds one of its tokens from reading such a request until it comes back for the next
// one, which is when pion has handled it. A flood of new work thus takes at most that many
// cores, and the rest stay with the workers and the requests of live allocations, which
// need no token.
type listenerShard struct {
	*dataplane.HandoffQueue // Static.
	g                       *listenerGroup
	holding                 bool           // holds a newWork token. Owned by pion's read loop of this shard.
	pending                 pendingRequest // the request pion handles now (intercept.go). Owned by pion's read loop of this shard.
}

func (l *listenerShard) request() *pendingRequest { return &l.pending }

var _ net.PacketConn = (*listenerShard)(nil)

// ReadFrom returns the next STUN message for pion, less those the relay drops or answers
// itself (admitRequest).
func (l *listenerShard) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if l.holding {
			<-l.g.srv.newWork
			l.holding = false
		}
		n, from, took, err := l.PopGated(b, l.g.srv.newWork)
		if err != nil {
			return 0, nil, err
		}
		l.holding = took
		addr := sock.UDPAddr(from)
		if l.g.srv.admitRequest(b[:n], from, addr, l) {
			return n, addr, nil
		}
	}
}

// reply sends an answer of the relay's own (a 300) to a client from the listen address.
func (l *listenerShard) reply(to netip.AddrPort, b []byte) bool {
	if !l.BeginSend() {
		return false
	}
	defer l.EndSend()
	var ra sock.RawAddr
	ra.Set(to)
	_ = sock.SendTo(l.g.sendFD, b, &ra)
	return true
}

// WriteTo sends pion's answer (or a Data indication) to a client.
func (l *listenerShard) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !l.BeginSend() {
		return 0, net.ErrClosed
	}
	defer l.EndSend()
	ap, ok := sock.AddrPortOf(addr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: unix.EAFNOSUPPORT}
	}
	n := len(b)
	b, ok = l.g.srv.passAnswer(b, addr, ap, l)
	if !ok {
		return n, nil
	}
	var to sock.RawAddr
	to.Set(ap)
	if err := sock.SendTo(l.g.sendFD, b, &to); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	if d, ok := dataIndicationPayload(b); ok {
		l.g.srv.slowStats.Count(metrics.PeerToClient, metrics.PathIndication, d)
	}
	return n, nil
}

// Close ends the shard's read loop; pion closes every shard.
func (l *listenerShard) Close() error {
	l.HandoffQueue.Close()
	return nil
}

// Close closes every shard.
func (l *listenerGroup) Close() error {
	for _, sh := range l.shards {
		_ = sh.Close()
	}
	return nil
}

func (l *listenerShard) LocalAddr() net.Addr              { return l.g.laddr }
func (l *listenerShard) SetDeadline(time.Time) error      { return nil }
func (l *listenerShard) SetReadDeadline(time.Time) error  { return nil }
func (l *listenerShard) SetWriteDeadline(time.Time) error { return nil }
