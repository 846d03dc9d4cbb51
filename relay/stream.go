//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/avedge/avedge/relay/internal/sock"
)

// streamListener hands pion TCP and TLS connections through framedConn, so that the relay
// applies to stream clients what it applies to UDP clients (intercept.go): the key-rotation
// check, the Allocate rate limit and the 300 answer while draining on the way in, the 403
// rewrite and the 401 rate limit on the way out.
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
	in     []byte // read, not yet framed: at most one partial frame (lengths are 16 bits)
	out    []byte // framed and approved, not yet read by pion
	lost   bool   // framing lost: pass bytes through
	buf    [16 << 10]byte
}

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
			size = stunHeaderSize + int(binary.BigEndian.Uint16(buf[2:4]))
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
		if f[0]&0xC0 != 0 || c.srv.admitRequest(f, c.remote, c.Conn.RemoteAddr(), c) {
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

// reply writes an answer of the relay's own (a 300) to the client, ahead of whatever pion
// writes next.
func (c *framedConn) reply(_ netip.AddrPort, b []byte) bool {
	_, _ = c.Conn.Write(b)
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
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}
