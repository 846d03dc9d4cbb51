//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
)

// slowPkt carries a datagram from a worker to pion. Pooled: the slow path is not free of
// allocations (pion's own handling allocates), but the hand-off itself reuses its buffers.
type slowPkt struct {
	n    int
	from netip.AddrPort
	buf  [bufSize]byte
}

var slowPool = sync.Pool{New: func() any { return new(slowPkt) }}

// handoffQueue is the bounded queue between the workers and one pion reader.
type handoffQueue struct {
	q      chan *slowPkt
	closed chan struct{}
	once   sync.Once
	// sending is held (read) by pion's writes while they use the socket, and (write) by
	// close, so that a socket is never written after it was closed and its number reused.
	sending sync.RWMutex
}

func newHandoffQueue(n int) handoffQueue {
	return handoffQueue{q: make(chan *slowPkt, n), closed: make(chan struct{})}
}

// push copies d for pion; false when pion is behind (the datagram is dropped) or gone.
func (h *handoffQueue) push(d []byte, from netip.AddrPort) bool {
	p := slowPool.Get().(*slowPkt)
	p.n = copy(p.buf[:], d)
	p.from = from
	select {
	case h.q <- p:
		return true
	default:
		slowPool.Put(p)
		return false
	}
}

func (h *handoffQueue) pop(b []byte) (int, netip.AddrPort, error) {
	select {
	case p := <-h.q:
		n := copy(b, p.buf[:p.n])
		from := p.from
		slowPool.Put(p)
		return n, from, nil
	case <-h.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (h *handoffQueue) close() bool {
	h.sending.Lock()
	defer h.sending.Unlock()
	first := false
	h.once.Do(func() { close(h.closed); first = true })
	return first
}

// beginSend reports whether the socket may still be written; endSend must follow a true.
func (h *handoffQueue) beginSend() bool {
	h.sending.RLock()
	select {
	case <-h.closed:
		h.sending.RUnlock()
		return false
	default:
		return true
	}
}

func (h *handoffQueue) endSend() { h.sending.RUnlock() }

// listenerGroup is one UDP listen address: a SO_REUSEPORT socket in every worker, and the
// net.PacketConn that pion reads STUN/TURN requests from and writes its answers to.
type listenerGroup struct {
	id     uint16         // index in Server.listeners. Static.
	addr   netip.AddrPort // Static.
	srv    *Server
	sendFD int // the socket pion's answers leave from (worker 0's). Static after start.
	handoffQueue
}

var _ net.PacketConn = (*listenerGroup)(nil)

func (l *listenerGroup) handoff(d []byte, from netip.AddrPort) bool { return l.push(d, from) }

// ReadFrom returns the next STUN message for pion. Allocate requests over their source's
// rate are dropped here, and while the relay drains with an alternate server configured they
// are answered here with 300 (Try Alternate).
func (l *listenerGroup) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := l.pop(b)
		if err != nil {
			return 0, nil, err
		}
		if n >= 20 && b[0] == 0x00 && b[1] == 0x03 { // Allocate request
			if lim := l.srv.allocLimit; lim != nil && !lim.Allow(from.Addr(), time.Now().UnixNano()) {
				l.srv.slowStats.drop(dropRateLimited)
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
	if resp == nil || !l.beginSend() {
		return
	}
	defer l.endSend()
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
	if !l.beginSend() {
		return 0, net.ErrClosed
	}
	defer l.endSend()
	ap, ok := sock.AddrPortOf(addr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: unix.EAFNOSUPPORT}
	}
	n := len(b)
	b = l.srv.fixChannelBindRefusal(b, addr)
	if lim := l.srv.authLimit; lim != nil && stunErrorCode(b) == 401 && !lim.Allow(ap.Addr(), time.Now().UnixNano()) {
		l.srv.slowStats.drop(dropRateLimited)
		return n, nil
	}
	var to sock.RawAddr
	to.Set(ap)
	if err := sock.SendTo(l.sendFD, b, &to); err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	if d, ok := dataIndicationPayload(b); ok {
		l.srv.slowStats.count(dirPeerToClient, pathIndication, d)
	}
	return n, nil
}

func (l *listenerGroup) Close() error {
	l.close()
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
	srv        *Server
	fd         int            // Static after construction.
	local      netip.AddrPort // bound address. Static.
	advertised netip.AddrPort // XOR-RELAYED-ADDRESS (external-ip mapping applied). Static.
	w          *worker        // the worker reading fd. Static.
	release    func()         // gives the port back. Static.
	created    time.Time      // Static.

	fa     atomic.Pointer[fastAlloc] // set when pion reports the allocation created
	bucket bandwidth                 // per-allocation cap; zero: unlimited

	handoffQueue
}

var _ net.PacketConn = (*relayConn)(nil)

func (r *relayConn) handoff(d []byte, from netip.AddrPort) bool { return r.push(d, from) }

func (r *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := r.pop(b)
	if err != nil {
		return 0, nil, err
	}
	if a := r.fa.Load(); a != nil && !a.udp {
		// TCP/TLS client: pion forwards it; count it the way pion will send it.
		path := pathIndication
		if a.chanByPeer(from) != nil {
			path = pathChannel
		}
		r.srv.slowStats.count(dirPeerToClient, path, n)
	}
	return n, sock.UDPAddr(from), nil
}

// WriteTo sends a payload that pion relays to a peer (Send indication, or ChannelData from a
// TCP/TLS client). The peer policy was applied when the permission was granted.
func (r *relayConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !r.beginSend() {
		return 0, net.ErrClosed
	}
	defer r.endSend()
	ap, ok := sock.AddrPortOf(addr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: unix.EAFNOSUPPORT}
	}
	if !r.srv.peerPortOK(ap) {
		r.srv.slowStats.drop(dropPolicy)
		return len(b), nil
	}
	if r.limited(len(b)) {
		r.srv.slowStats.drop(dropQuota)
		return len(b), nil
	}
	var to sock.RawAddr
	to.Set(ap)
	if err := sock.SendTo(r.fd, b, &to); err != nil {
		r.srv.slowStats.drop(dropSendError)
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	path := pathIndication
	if a := r.fa.Load(); a != nil && !a.udp && a.chanByPeer(ap) != nil {
		path = pathChannel
	}
	r.srv.slowStats.count(dirClientToPeer, path, len(b))
	return len(b), nil
}

// Close stops the worker reading the socket, closes it and gives its port back to the edge
// range. pion calls it when the allocation ends (expiry, Refresh 0, shutdown).
func (r *relayConn) Close() error {
	if !r.close() {
		return nil
	}
	r.w.closeRelay(r)
	r.release()
	r.srv.relayClosed(r)
	return nil
}

func (r *relayConn) LocalAddr() net.Addr              { return sock.UDPAddr(r.local) }
func (r *relayConn) SetDeadline(time.Time) error      { return nil }
func (r *relayConn) SetReadDeadline(time.Time) error  { return nil }
func (r *relayConn) SetWriteDeadline(time.Time) error { return nil }

// limited reports whether n more bytes exceed the allocation's bandwidth cap.
func (r *relayConn) limited(n int) bool { return r.bucket.over(n) }

// slowStats counts what pion relays (indications, TCP clients). Event rate is packet rate on
// those paths, so these are atomics shared by the pion goroutines.
type slowStats struct {
	traffic [2][2]struct{ packets, bytes atomic.Uint64 }
	drops   [numDropReasons]atomic.Uint64
}

func (s *slowStats) count(dir, path, n int) {
	s.traffic[dir][path].packets.Add(1)
	s.traffic[dir][path].bytes.Add(uint64(n))
}

func (s *slowStats) drop(r dropReason) { s.drops[r].Add(1) }
