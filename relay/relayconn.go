//go:build linux

package relay

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
)

// relayConn is one allocation's relay socket as pion sees it: pion reads the peer packets that
// are not on a bound channel (to send Data indications) and writes Send-indication and
// TCP-client ChannelData payloads to peers. The socket itself is read by a worker.
type relayConn struct {
	*dataplane.Relay                   // the workers' side: FD, the allocation, the cap, the queue. Static.
	srv              *Server           // Static.
	local            netip.AddrPort    // bound address. Static.
	advertised       netip.AddrPort    // XOR-RELAYED-ADDRESS (external-ip mapping applied). Static.
	w                *dataplane.Worker // the worker reading FD. Static.
	release          func()            // gives the port back. Static.
	created          time.Time         // Static.
	seq              uint64            // the relay socket's number, from Server.relaySeq; with the port, the allocation's admin id. Static.
	// ending is set (to its endReason) when the admin API or a revocation ends the
	// allocation (admin.go): ReadFrom then fails, and pion's reader deletes the allocation
	// the way it deletes one whose relay socket failed. Zero: not ended.
	ending atomic.Uint32
	owner  atomic.Pointer[allocation] // its allocation, once pion reports it created (for the admin API's lookup by id)
}

var _ net.PacketConn = (*relayConn)(nil)

func (r *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if r.ending.Load() != 0 {
		return 0, nil, net.ErrClosed
	}
	n, from, err := r.Pop(b)
	if err != nil {
		return 0, nil, err
	}
	if r.ending.Load() != 0 { // woken by end (its empty datagram), or ended while it waited
		return 0, nil, net.ErrClosed
	}
	r.Traffic.Count(metrics.PeerToClient, n)
	if a := r.Relay.Alloc.Load(); a != nil && !a.UDP {
		// TCP/TLS client: pion forwards it; count it the way pion will send it.
		path := metrics.PathIndication
		if a.ChanByPeer(from) != nil {
			path = metrics.PathChannel
		}
		r.srv.slowStats.Count(metrics.PeerToClient, path, n)
	}
	return n, sock.UDPAddr(from), nil
}

// WaitRead returns once ReadFrom has a datagram to read (or fails as ReadFrom would). pion's
// allocation reader (third_party/pion-turn, PATCHES.md) calls it before it takes a read buffer,
// so an idle allocation holds none.
func (r *relayConn) WaitRead() error {
	if r.ending.Load() != 0 {
		return net.ErrClosed
	}
	return r.HandoffQueue.Wait()
}

// WriteTo sends a payload that pion relays to a peer (Send indication, or ChannelData from a
// TCP/TLS client). The peer policy was applied when the permission was granted.
//
// RFC 8656 §12.4: for ChannelData "the server MUST also check that there is a permission
// installed for the peer's IP address; if not, the message is silently discarded." pion
// checks the permission of a Send indication but forwards a stream client's ChannelData on
// the channel alone, which outlives its permission unless the client refreshes it; so the
// permission is checked here, against the same table the UDP data path checks.
func (r *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !r.BeginSend() {
		return 0, net.ErrClosed
	}
	defer r.EndSend()
	ap, ok := sock.AddrPortOf(addr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: unix.EAFNOSUPPORT}
	}
	if a := r.Relay.Alloc.Load(); a != nil && !a.Permitted(ap.Addr()) {
		r.srv.slowStats.Drop(dataplane.DropNoPermission)
		return len(b), nil
	}
	if !r.srv.peerPortOK(ap) {
		r.srv.slowStats.Drop(dataplane.DropPolicy)
		return len(b), nil
	}
	if r.Limited(len(b)) {
		r.srv.slowStats.Drop(dataplane.DropQuota)
		return len(b), nil
	}
	var to sock.RawAddr
	to.Set(ap)
	if err := sock.SendTo(r.FD, b, &to); err != nil {
		r.srv.slowStats.Drop(dataplane.DropSendError)
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	path := metrics.PathIndication
	if a := r.Relay.Alloc.Load(); a != nil && !a.UDP && a.ChanByPeer(ap) != nil {
		path = metrics.PathChannel
	}
	r.srv.slowStats.Count(metrics.ClientToPeer, path, len(b))
	r.Traffic.Count(metrics.ClientToPeer, len(b))
	return len(b), nil
}

// Close stops the worker reading the socket, closes it and gives its port back to the edge
// range. pion calls it when the allocation ends (expiry, Refresh 0, shutdown).
//
// Before it does, pion has removed the allocation's channels (Allocation.Close calls
// RemoveChannelBind, and so our OnChannelDeleted, for each first), so no worker finds this
// socket in the fast-path table any more; CloseRelay then waits until every worker has sent
// what it had looked up before, so that no datagram leaves through a reused fd number.
func (r *relayConn) Close() error {
	if !r.HandoffQueue.Close() {
		return nil
	}
	r.w.CloseRelay(r.Relay, r.srv.workers)
	r.release()
	r.srv.relayClosed(r)
	return nil
}

func (r *relayConn) LocalAddr() net.Addr              { return sock.UDPAddr(r.local) }
func (r *relayConn) SetDeadline(time.Time) error      { return nil }
func (r *relayConn) SetReadDeadline(time.Time) error  { return nil }
func (r *relayConn) SetWriteDeadline(time.Time) error { return nil }
