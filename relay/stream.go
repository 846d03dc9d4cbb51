//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
)

// streamListener hands pion TCP and TLS connections through framedConn, so that the relay
// applies to stream clients what it applies to UDP clients before pion sees a request: the
// key-rotation check, the Allocate rate limit, and the 300 answer while draining.
type streamListener struct {
	net.Listener
	srv *Server
}

func (l streamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ap, _ := sock.AddrPortOf(c.RemoteAddr())
	return &framedConn{Conn: c, srv: l.srv, remote: ap}, nil
}

// framedConn follows RFC 8656's framing over a stream — STUN messages (20-byte header plus
// the length in bytes 2–3) and ChannelData (4-byte header plus the length, "padded to a
// multiple of four bytes" over TCP, §12.5) — and passes pion whole frames, less the ones the
// relay answers or drops itself. Garbage that frames nothing is passed on unchanged for pion
// to refuse.
type framedConn struct {
	net.Conn
	srv    *Server
	remote netip.AddrPort
	in     []byte // read, not yet framed; bounded by maxFrame
	out    []byte // framed and approved, not yet read by pion
	lost   bool   // framing lost: pass bytes through
	buf    [16 << 10]byte
}

const maxFrame = 4 + 65535 + 3

func (c *framedConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		n, err := c.Conn.Read(c.buf[:])
		if n > 0 {
			if c.lost {
				c.out = append(c.out, c.buf[:n]...)
			} else {
				c.in = append(c.in, c.buf[:n]...)
				c.frame()
			}
		}
		if err != nil {
			if len(c.out) == 0 {
				return 0, err
			}
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

// frame moves every complete frame of c.in to c.out, or answers or drops it.
func (c *framedConn) frame() {
	buf := c.in
	for len(buf) >= 4 {
		var size int
		switch buf[0] & 0xC0 {
		case 0x00:
			size = 20 + int(binary.BigEndian.Uint16(buf[2:4]))
		case 0x40:
			size = (4 + int(binary.BigEndian.Uint16(buf[2:4])) + 3) &^ 3
		default:
			c.lost = true
		}
		if c.lost {
			break
		}
		if len(buf) < size {
			break
		}
		f := buf[:size]
		if f[0]&0xC0 == 0 && !c.intercept(f) {
			c.srv.checkRotation(f, c.Conn.RemoteAddr())
			c.out = append(c.out, f...)
		} else if f[0]&0xC0 != 0 {
			c.out = append(c.out, f...)
		}
		buf = buf[size:]
	}
	if c.lost {
		c.out = append(c.out, buf...)
		buf = nil
	}
	c.in = append(c.in[:0:0], buf...)
}

// intercept applies the Allocate rate limit and the draining redirect to a STUN frame; it
// reports whether the frame was consumed.
func (c *framedConn) intercept(f []byte) bool {
	if len(f) < 20 || f[0] != 0x00 || f[1] != 0x03 { // Allocate request
		return false
	}
	s := c.srv
	if lim := s.allocLimit; lim != nil && !lim.Allow(c.remote.Addr(), time.Now().UnixNano()) {
		s.slowStats.Drop(dataplane.DropRateLimited)
		return true
	}
	if alt := s.cfg.AlternateServer; alt.IsValid() && s.draining.Load() {
		if resp := tryAlternateResponse(f, alt); resp != nil {
			_, _ = c.Conn.Write(resp)
			s.countAttempt("draining")
		}
		return true
	}
	return false
}

// Write passes pion's answers on, except 401s over the client address's rate, with a
// policy-refused ChannelBind answered 403 (fixChannelBindRefusal).
func (c *framedConn) Write(b []byte) (int, error) {
	n := len(b)
	b = c.srv.fixChannelBindRefusal(b, c.Conn.RemoteAddr())
	if lim := c.srv.authLimit; lim != nil && stunErrorCode(b) == 401 && !lim.Allow(c.remote.Addr(), time.Now().UnixNano()) {
		c.srv.slowStats.Drop(dataplane.DropRateLimited)
		return n, nil
	}
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}
