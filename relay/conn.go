//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
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

// ReadFrom returns the next STUN message for pion. Allocate requests over their source's
// rate are dropped here, and while the relay drains with an alternate server configured they
// are answered here with 300 (Try Alternate).
func (l *listenerGroup) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := l.Pop(b)
		if err != nil {
			return 0, nil, err
		}
		if n >= 20 && b[0] == 0x00 && b[1] == 0x03 { // Allocate request
			if lim := l.srv.allocLimit; lim != nil && !lim.Allow(from.Addr(), time.Now().UnixNano()) {
				l.srv.slowStats.Drop(dataplane.DropRateLimited)
				continue
			}
			if alt := l.srv.cfg.AlternateServer; alt.IsValid() && l.srv.draining.Load() {
				l.tryAlternate(b[:n], from, alt)
				continue
			}
		}
		addr := sock.UDPAddr(from)
		l.srv.checkRotation(b[:n], addr)
		return n, addr, nil
	}
}

// tryAlternate answers an Allocate request with 300 (Try Alternate).
//
// RFC 8489 §10: "The ALTERNATE-SERVER attribute ... the server MUST include it in a 300
// (Try Alternate) error response"; RFC 8656 §7.2 lets the server redirect an Allocate
// request this way "if it wishes to redirect the client to a different server".
func (l *listenerGroup) tryAlternate(req []byte, from, alt netip.AddrPort) {
	resp := tryAlternateResponse(req, alt)
	if resp == nil || !l.BeginSend() {
		return
	}
	defer l.EndSend()
	var to sock.RawAddr
	to.Set(from)
	_ = sock.SendTo(l.sendFD, resp, &to)
	l.srv.countAttempt("draining")
}

// tryAlternateResponse builds the 300 (Try Alternate) answer to an Allocate request, or nil
// if the request does not parse.
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
	b = l.srv.fixChannelBindRefusal(b, addr)
	if lim := l.srv.authLimit; lim != nil && stunErrorCode(b) == 401 && !lim.Allow(ap.Addr(), time.Now().UnixNano()) {
		l.srv.slowStats.Drop(dataplane.DropRateLimited)
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

// dataIndicationPayload reports the DATA length of a STUN Data indication (type 0x0017),
// for the indication counters; it is not a general STUN parser.
func dataIndicationPayload(b []byte) (int, bool) {
	if len(b) < 20 || binary.BigEndian.Uint16(b[0:2]) != 0x0017 {
		return 0, false
	}
	for off := 20; off+4 <= len(b); {
		t := binary.BigEndian.Uint16(b[off:])
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if t == 0x0013 { // DATA
			return l, true
		}
		off += 4 + (l+3)&^3
	}
	return 0, false
}

// stunErrorCode returns the ERROR-CODE of a STUN error response, or 0.
func stunErrorCode(b []byte) int {
	if len(b) < 20 || b[0]&0x01 == 0 || b[1]&0x10 == 0 {
		return 0
	}
	for off := 20; off+4 <= len(b); {
		t := binary.BigEndian.Uint16(b[off:])
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if t == 0x0009 && l >= 4 && off+8 <= len(b) {
			return int(b[off+6]&0x07)*100 + int(b[off+7])
		}
		off += 4 + (l+3)&^3
	}
	return 0
}

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
}

var _ net.PacketConn = (*relayConn)(nil)

func (r *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := r.Pop(b)
	if err != nil {
		return 0, nil, err
	}
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

// WriteTo sends a payload that pion relays to a peer (Send indication, or ChannelData from a
// TCP/TLS client). The peer policy was applied when the permission was granted.
func (r *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !r.BeginSend() {
		return 0, net.ErrClosed
	}
	defer r.EndSend()
	ap, ok := sock.AddrPortOf(addr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: unix.EAFNOSUPPORT}
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
	return len(b), nil
}

// Close stops the worker reading the socket, closes it and gives its port back to the edge
// range. pion calls it when the allocation ends (expiry, Refresh 0, shutdown).
func (r *relayConn) Close() error {
	if !r.HandoffQueue.Close() {
		return nil
	}
	r.w.CloseRelay(r.Relay)
	r.release()
	r.srv.relayClosed(r)
	return nil
}

func (r *relayConn) LocalAddr() net.Addr              { return sock.UDPAddr(r.local) }
func (r *relayConn) SetDeadline(time.Time) error      { return nil }
func (r *relayConn) SetReadDeadline(time.Time) error  { return nil }
func (r *relayConn) SetWriteDeadline(time.Time) error { return nil }
