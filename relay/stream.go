//go:build linux

package relay

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
)

// streamListener hands pion TCP and TLS connections through framedConn, so that the relay
// applies to stream clients what it applies to UDP clients (intercept.go): the key-rotation
// check, the Allocate rate limit and the 300 answer while draining on the way in, the 403
// rewrite and the 401 rate limit on the way out.
//
// It also bounds what connections can cost before and after they prove to be TURN clients:
// MaxStreamConns and MaxStreamConnsPerSource are enforced as connections are accepted (one
// beyond a cap is closed at once), and each framedConn enforces the TLS handshake, first
// message, idle and write timeouts. A failed Accept (EMFILE, ENFILE, ECONNABORTED, ...) is retried
// with a backoff, as net/http's Server.Serve does: pion's accept loop returns on the first
// error, which would stop the listener for good.
type streamListener struct {
	net.Listener               // the TCP listener. Static.
	srv          *Server       // Static.
	tls          *tls.Config   // nil: plain TCP. Static.
	proxy        bool          // connections start with a PROXY protocol header (proxyproto.go). Static after newStreamListener.
	done         chan struct{} // closed by Close
	closeOnce    sync.Once

	mu     sync.Mutex
	conns  map[*framedConn]struct{} // connections handed to pion and not yet closed. Guarded by mu.
	closed bool                     // Guarded by mu.
}

func newStreamListener(ln net.Listener, srv *Server, cfg *tls.Config) *streamListener {
	return &streamListener{Listener: ln, srv: srv, tls: cfg, done: make(chan struct{}), conns: map[*framedConn]struct{}{}}
}

// Accept returns the next connection within the caps. It returns an error only once the
// listener is closed.
func (l *streamListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			select {
			case <-l.done:
				return nil, net.ErrClosed
			default:
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.srv.streamStats.acceptErrors.Add(1)
			l.srv.log.Warn("relay: accept failed; retrying", "listener", l.Addr().String(), "err", err, "retry-in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if fc := l.admit(c); fc != nil {
			return fc, nil
		}
	}
}

// admit wraps c in a framedConn if the caps let it in, and closes it if not. On a PROXY
// protocol listener, c must come from a load balancer of ProxyProtocolFrom; it takes a slot
// of MaxStreamConns here and one of MaxStreamConnsPerSource, for the client its header names,
// once the header is read (framedConn.start).
func (l *streamListener) admit(c net.Conn) *framedConn {
	s := l.srv
	s.streamStats.accepted.Add(1)
	ap, _ := sock.AddrPortOf(c.RemoteAddr())
	src := ap.Addr() // the address whose per-source slot is held; invalid: none yet
	if l.proxy {
		if !s.proxyAllowed(ap.Addr()) {
			s.streamStats.proxyRefused.Add(1)
			s.streamStats.proxyBy[metrics.ProxyNotFromProxy].Add(1)
			s.logProxyRefusal("connection from an address not in proxy-protocol-from", ap, nil)
			_ = c.Close()
			return nil
		}
		src = netip.Addr{}
	}
	switch s.conns.acquireFor(src) {
	case connAdmitted:
	case connOverTotal:
		s.streamStats.overTotal.Add(1)
		s.logStreamRefusal("max-tcp-connections", ap)
		_ = c.Close()
		return nil
	case connOverSource:
		s.streamStats.overSource.Add(1)
		s.logStreamRefusal("max-tcp-connections-per-source", ap)
		_ = c.Close()
		return nil
	}
	fc := &framedConn{Conn: c, srv: s, remote: ap, lis: l, slotSrc: src}
	if l.proxy {
		fc.proxied = &proxiedConn{Conn: c}
		fc.Conn = fc.proxied
	}
	if l.tls != nil {
		fc.tls = tls.Server(fc.Conn, l.tls)
		fc.Conn = fc.tls
	}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.conns[fc] = struct{}{}
	}
	l.mu.Unlock()
	if closed {
		_ = fc.Close()
		return nil
	}
	return fc
}

// logStreamRefusal logs a connection closed by a cap, at most once every ten seconds (the
// counts go on in streamStats).
func (s *Server) logStreamRefusal(limit string, from netip.AddrPort) {
	now := time.Now().UnixNano()
	last := s.streamStats.lastLog.Load()
	if now-last < int64(10*time.Second) || !s.streamStats.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("relay: TCP/TLS connection refused: limit reached (logged at most every 10s)", "limit", limit, "client", from.String(),
		"live", s.conns.live(), "refused-total", s.streamStats.overTotal.Load(), "refused-per-source", s.streamStats.overSource.Load())
}

// proxyAllowed reports whether ip may send PROXY protocol headers.
func (s *Server) proxyAllowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.cfg.ProxyProtocolFrom {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// logProxyRefusal logs a connection a PROXY protocol listener closed, at most once every ten
// seconds (the counts go on in streamStats).
func (s *Server) logProxyRefusal(why string, from netip.AddrPort, err error) {
	now := time.Now().UnixNano()
	last := s.streamStats.lastProxyLog.Load()
	if now-last < int64(10*time.Second) || !s.streamStats.lastProxyLog.CompareAndSwap(last, now) {
		return
	}
	attrs := []any{"from", from.String(), "refused-source", s.streamStats.proxyRefused.Load(), "refused-header", s.streamStats.proxyHeader.Load()}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	s.log.Warn("relay: PROXY protocol listener closed a connection: "+why+" (logged at most every 10s)", attrs...)
}

// Close closes the listener and every connection it accepted (which ends pion's read loop
// of each); an Accept waiting to retry returns at once.
func (l *streamListener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.mu.Lock()
		l.closed = true
		conns := l.conns
		l.conns = nil
		l.mu.Unlock()
		for fc := range conns {
			_ = fc.Close()
		}
	})
	return err
}

// maxStreamFrame is the longest frame passed to pion: pion reads a stream connection's frames
// into a buffer of its inbound MTU (1600 bytes by default, which the relay keeps); it drops a
// frame that fills it and closes the connection on a longer one. framedConn closes it
// itself, before buffering the frame.
const maxStreamFrame = 1600

// streamReadSize is the read buffer of a connection that has sent a valid frame.
const streamReadSize = 16 << 10

var errFrameTooLarge = errors.New("relay: stream frame longer than the relay reads")

// framedConn follows RFC 8656's framing over a stream — STUN messages (20-byte header plus
// the length in bytes 2–3) and ChannelData (4-byte header plus the length, "padded to a
// multiple of four bytes" over TCP, §12.5) — and passes pion whole frames, less the ones the
// relay answers or drops itself. Garbage that frames nothing is passed on unchanged for pion
// to refuse.
//
// Its reader is pion's read loop for the connection; Write is called by pion's read loop and
// allocation goroutines; Close by pion's read loop when it ends. Fields below are owned by
// the reader unless they say otherwise.
type framedConn struct {
	net.Conn                 // the client's connection (the *tls.Conn for TLS). Static.
	srv      *Server         // Static.
	lis      *streamListener // nil in tests of the framing alone. Static.
	remote   netip.AddrPort  // the client. Static, but on a PROXY protocol listener set by start from the header.
	tls      *tls.Conn       // nil: plain TCP. Static.
	proxied  *proxiedConn    // nil: no PROXY protocol header to read. Static.

	started  bool           // handshake done and the first-message deadline set
	deadline bool           // a read deadline is set
	valid    bool           // a complete STUN message or ChannelData has arrived
	armed    time.Time      // when the idle deadline was last pushed back
	err      error          // returned once out is empty
	in       []byte         // read, not yet framed: at most one partial frame
	out      []byte         // framed and approved, not yet read by pion
	lost     bool           // framing lost: pass bytes through
	buf      []byte         // read buffer: made once the connection is valid
	head     [64]byte       // read buffer until then
	pending  pendingRequest // the request pion handles now (intercept.go). Owned by pion's read loop of this connection.
	hold     bool           // a ConnectionBind was passed on: frame no further until pion reads again

	writeArmed atomic.Int64 // unix nanoseconds the write deadline was last pushed back. Any writer.
	closeOnce  sync.Once    // Close gives back the connection's slot of the caps once.

	slotMu  sync.Mutex // guards slotSrc and closed: start and Close may race
	slotSrc netip.Addr // whose per-source slot of the caps the connection holds; invalid: none (yet). Guarded by slotMu.
	closed  bool       // Guarded by slotMu.
}

func (c *framedConn) request() *pendingRequest { return &c.pending }

func (c *framedConn) Read(p []byte) (int, error) {
	if !c.started {
		if err := c.start(); err != nil {
			return 0, err
		}
	}
	for len(c.out) == 0 {
		if c.hold {
			// pion reads on after a ConnectionBind: it failed, and the connection goes on
			// framed.
			c.hold = false
			if c.err == nil {
				c.err = c.frame()
			}
			continue
		}
		if c.err != nil {
			return 0, c.err
		}
		c.arm()
		buf := c.head[:]
		if c.buf != nil {
			buf = c.buf
		}
		n, err := c.Conn.Read(buf)
		if n > 0 {
			if c.lost {
				c.out = append(c.out, buf[:n]...)
			} else {
				c.in = append(c.in, buf[:n]...)
				c.err = c.frame()
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if c.valid {
					c.srv.streamStats.idleTimeout.Add(1)
				} else {
					c.srv.streamStats.firstTimeout.Add(1)
				}
			}
			if len(c.out) == 0 {
				return 0, err
			}
			c.err = err
			break
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = c.out[:0:0]
	}
	return n, nil
}

// start reads the PROXY protocol header (on such a listener), runs the TLS handshake within
// TLSHandshakeTimeout (pion's own timeout applies only to connections it sees as *tls.Conn),
// then sets the first-message deadline.
func (c *framedConn) start() error {
	cfg := &c.srv.cfg
	if c.proxied != nil {
		if err := c.readProxy(); err != nil {
			return err
		}
	}
	if c.tls != nil {
		if d := cfg.TLSHandshakeTimeout; d > 0 {
			_ = c.Conn.SetDeadline(time.Now().Add(d))
		}
		if err := c.tls.Handshake(); err != nil {
			c.srv.streamStats.handshake.Add(1)
			return fmt.Errorf("relay: tls handshake: %w", err)
		}
		_ = c.Conn.SetDeadline(time.Time{})
		c.writeArmed.Store(0) // the next write sets its deadline afresh
	}
	if d := cfg.StreamFirstMessageTimeout; d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
		c.deadline = true
	}
	c.started = true
	return nil
}

// readProxy reads the PROXY protocol header within ProxyHeaderTimeout; the client it names
// becomes the connection's remote address and takes its per-source slot of the caps.
func (c *framedConn) readProxy() error {
	s := c.srv
	raw := c.proxied.Conn
	if d := s.cfg.ProxyHeaderTimeout; d > 0 {
		_ = raw.SetReadDeadline(time.Now().Add(d))
	}
	h, rest, err := readProxyHeader(raw)
	_ = raw.SetReadDeadline(time.Time{})
	if err != nil {
		s.streamStats.proxyHeader.Add(1)
		s.streamStats.proxyBy[proxyRefusalOf(err)].Add(1)
		s.logProxyRefusal("no valid PROXY protocol header", c.remote, err)
		return err
	}
	c.proxied.rest = rest
	client := c.remote
	if !h.local {
		client = h.src
		c.proxied.remote = net.TCPAddrFromAddrPort(client)
	}
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	switch s.conns.acquireSource(client.Addr()) {
	case connAdmitted:
	default:
		s.streamStats.overSource.Add(1)
		s.logStreamRefusal("max-tcp-connections-per-source", client)
		return fmt.Errorf("relay: %s: max-tcp-connections-per-source reached", client)
	}
	c.slotSrc, c.remote = client.Addr(), client
	return nil
}

// arm pushes the idle deadline back before a read, once the connection is valid (until then
// the first-message deadline stands). To spare a timer update per read it moves the deadline
// only when an eighth of the timeout has gone by, and sets it an eighth further, so that a
// connection is closed after at least StreamIdleTimeout of silence, and at most an eighth
// more.
func (c *framedConn) arm() {
	if !c.valid {
		return
	}
	d := c.srv.cfg.StreamIdleTimeout
	if d <= 0 {
		if c.deadline {
			_ = c.Conn.SetReadDeadline(time.Time{})
			c.deadline = false
		}
		return
	}
	now := time.Now()
	if !c.deadline || now.Sub(c.armed) >= d/8 {
		_ = c.Conn.SetReadDeadline(now.Add(d + d/8))
		c.armed, c.deadline = now, true
	}
}

// frame moves every complete frame of c.in to c.out, or answers or drops it. It returns
// errFrameTooLarge for a frame longer than maxStreamFrame, after the frames before it.
func (c *framedConn) frame() error {
	buf := c.in
	var err error
	for len(buf) >= 4 {
		var size int
		switch buf[0] & 0xC0 {
		case 0x00:
			size = stunHeaderSize + int(binary.BigEndian.Uint16(buf[2:4]))
		case 0x40:
			size = (4 + int(binary.BigEndian.Uint16(buf[2:4])) + 3) &^ 3
		default:
			c.lost = true
		}
		if c.lost {
			break
		}
		if size > maxStreamFrame {
			c.srv.streamStats.tooLarge.Add(1)
			err = errFrameTooLarge
			break
		}
		if len(buf) < size {
			break
		}
		f := buf[:size]
		if !c.valid && validFrame(f) {
			c.valid = true
			c.buf = make([]byte, streamReadSize)
		}
		if f[0]&0xC0 != 0 || c.srv.admitRequest(f, c.remote, c.Conn.RemoteAddr(), c) {
			c.out = append(c.out, f...)
			if isConnectionBind(f) {
				// RFC 6062 §5.4: once bound, the connection carries the peer's bytes, not
				// frames. What follows stays in c.in for WriteTo (tcprelay.go).
				buf = buf[size:]
				c.hold = true
				break
			}
		}
		buf = buf[size:]
	}
	if c.lost {
		c.out = append(c.out, buf...)
		buf = nil
	}
	c.in = append(c.in[:0:0], buf...)
	return err
}

// validFrame reports whether a complete frame is a STUN message (RFC 8489 §5: the magic
// cookie) or ChannelData on a channel number a client may bind (RFC 8656 §12: 0x4000 through
// 0x4FFF): what pion takes, rather than what it refuses by closing the connection.
func validFrame(f []byte) bool {
	if f[0]&0xC0 == 0 {
		return len(f) >= stunHeaderSize && binary.BigEndian.Uint32(f[4:8]) == 0x2112A442
	}
	return f[0]&0xF0 == 0x40
}

// reply writes an answer of the relay's own (a 300) to the client, ahead of whatever pion
// writes next.
func (c *framedConn) reply(_ netip.AddrPort, b []byte) bool {
	_ = c.write(b)
	return true
}

// Write passes pion's answers on as passAnswer says: a policy-refused ChannelBind answered
// 403, 401s over the client address's rate not at all.
func (c *framedConn) Write(b []byte) (int, error) {
	n := len(b)
	b, ok := c.srv.passAnswer(b, c.Conn.RemoteAddr(), c.remote, c)
	if !ok {
		return n, nil
	}
	if err := c.write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// write writes b within StreamWriteTimeout (the deadline is pushed back when an eighth of it
// has gone by, as arm does for reads). A write that fails may have sent part of a frame, and
// a *tls.Conn is unusable after a timeout: the connection is closed, which ends pion's read
// loop and the allocation.
func (c *framedConn) write(b []byte) error {
	if d := c.srv.cfg.StreamWriteTimeout; d > 0 {
		now := time.Now()
		if last := c.writeArmed.Load(); now.UnixNano()-last >= int64(d/8) && c.writeArmed.CompareAndSwap(last, now.UnixNano()) {
			_ = c.Conn.SetWriteDeadline(now.Add(d + d/8))
		}
	}
	_, err := c.Conn.Write(b)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.srv.streamStats.writeTimeout.Add(1)
		}
		_ = c.Conn.Close()
	}
	return err
}

// Close closes the connection and gives its slot of the caps back.
func (c *framedConn) Close() error {
	c.closeOnce.Do(func() {
		if c.lis != nil {
			c.slotMu.Lock()
			c.srv.conns.releaseFor(c.slotSrc)
			c.slotSrc, c.closed = netip.Addr{}, true
			c.slotMu.Unlock()
			c.lis.mu.Lock()
			delete(c.lis.conns, c)
			c.lis.mu.Unlock()
		}
	})
	return c.Conn.Close()
}
