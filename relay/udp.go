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

// listenerGroup is one UDP listen address: a SO_REUSEPORT socket in every worker, and the
// net.PacketConn that pion reads STUN/TURN requests from and writes its answers to.
type listenerGroup struct {
	*dataplane.Listener                // the workers' side: ID (index in Server.listeners) and the queue. Static.
	addr                netip.AddrPort // Static.
	srv                 *Server        // Static.
	sendFD              int            // the socket pion's answers leave from (worker 0's). Static after start.
}

var _ net.PacketConn = (*listenerGroup)(nil)

// ReadFrom returns the next STUN message for pion, less those the relay drops or answers
// itself (admitRequest).
func (l *listenerGroup) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := l.Pop(b)
		if err != nil {
			return 0, nil, err
		}
		addr := sock.UDPAddr(from)
		if l.srv.admitRequest(b[:n], from, addr, l) {
			return n, addr, nil
		}
	}
}

// reply sends an answer of the relay's own (a 300) to a client from the listen address.
func (l *listenerGroup) reply(to netip.AddrPort, b []byte) bool {
	if !l.BeginSend() {
		return false
	}
	defer l.EndSend()
	var ra sock.RawAddr
	ra.Set(to)
	_ = sock.SendTo(l.sendFD, b, &ra)
	return true
}

// WriteTo sends pion's answer (or a Data indication) to a client.
func (l *listenerGroup) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !l.BeginSend() {
		return 0, net.ErrClosed
	}
	defer l.EndSend()
	ap, ok := sock.AddrPortOf(addr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: unix.EAFNOSUPPORT}
	}
	n := len(b)
	b, ok = l.srv.passAnswer(b, addr, ap, l)
	if !ok {
		return n, nil
	}
	var to sock.RawAddr
	to.Set(ap)
	if err := sock.SendTo(l.sendFD, b, &to); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	if d, ok := dataIndicationPayload(b); ok {
		l.srv.slowStats.Count(metrics.PeerToClient, metrics.PathIndication, d)
	}
	return n, nil
}

func (l *listenerGroup) Close() error {
	l.HandoffQueue.Close()
	return nil
}

func (l *listenerGroup) LocalAddr() net.Addr              { return sock.UDPAddr(l.addr) }
func (l *listenerGroup) SetDeadline(time.Time) error      { return nil }
func (l *listenerGroup) SetReadDeadline(time.Time) error  { return nil }
func (l *listenerGroup) SetWriteDeadline(time.Time) error { return nil }
