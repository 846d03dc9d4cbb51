//go:build linux

package relay

import (
	"encoding/binary"
	"net"
)

// streamListener hands pion TCP and TLS connections that let the relay see each STUN message
// before pion does, for the same key-rotation check the UDP listeners make (checkRotation).
type streamListener struct {
	net.Listener
	srv *Server
}

func (l streamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framedConn{Conn: c, srv: l.srv}, nil
}

// framedConn follows RFC 8656's framing over a stream — STUN messages (20-byte header plus
// the length in bytes 2–3) and ChannelData (4-byte header plus the length, "padded to a
// multiple of four bytes" over TCP, §12.5) — without changing a byte of what pion reads.
type framedConn struct {
	net.Conn
	srv     *Server
	pending []byte // an incomplete frame carried over from the last Read; bounded
	lost    bool   // framing lost (garbage): stop looking, pion will close the connection
}

const maxFrame = 4 + 65535 + 3

func (c *framedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.lost {
		c.scan(p[:n])
	}
	return n, err
}

func (c *framedConn) scan(b []byte) {
	buf := b
	if len(c.pending) > 0 {
		c.pending = append(c.pending, b...)
		buf = c.pending
	}
	for len(buf) >= 4 {
		var size int
		switch buf[0] & 0xC0 {
		case 0x00:
			size = 20 + int(binary.BigEndian.Uint16(buf[2:4]))
		case 0x40:
			size = (4 + int(binary.BigEndian.Uint16(buf[2:4])) + 3) &^ 3
		default:
			c.lost, c.pending = true, nil
			return
		}
		if len(buf) < size {
			break
		}
		if buf[0]&0xC0 == 0 {
			c.srv.checkRotation(buf[:size], c.Conn.RemoteAddr())
		}
		buf = buf[size:]
	}
	if len(buf) > maxFrame {
		c.lost, c.pending = true, nil
		return
	}
	c.pending = append(c.pending[:0:0], buf...)
}
