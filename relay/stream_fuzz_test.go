//go:build linux

package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
)

// chunkConn is the client side of a stream as framedConn reads it: the given chunks, one per
// Read, then io.EOF. What is written to it is kept.
type chunkConn struct {
	net.Conn // nil: only the methods below are used
	chunks   [][]byte
	written  []byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func (c *chunkConn) Write(b []byte) (int, error) {
	c.written = append(c.written, b...)
	return len(b), nil
}
func (c *chunkConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
}

// readAll reads through a framedConn over chunks until EOF or a frame too long to pass
// (framedConn.err then says so), as pion would, and returns what pion got and the conn.
func readAll(t *testing.T, chunks ...[]byte) ([]byte, *framedConn) {
	t.Helper()
	c := &framedConn{
		Conn:   &chunkConn{chunks: chunks},
		srv:    &Server{}, // no limits, not draining, no key rotation: nothing is intercepted
		remote: netip.MustParseAddrPort("127.0.0.1:5000"),
	}
	var got []byte
	p := make([]byte, 1500)
	for i := 0; ; i++ {
		n, err := c.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF || errors.Is(err, errFrameTooLarge) {
			return got, c
		}
		if err != nil || i > 1<<20 {
			t.Fatalf("read: %v after %d reads", err, i)
		}
	}
}

// frameSize is the size of the frame at the start of b under RFC 8656 §12.5's stream framing
// (0 for a first byte that is neither STUN nor ChannelData).
func frameSize(b []byte) int {
	switch b[0] & 0xC0 {
	case 0x00:
		return stunHeaderSize + int(binary.BigEndian.Uint16(b[2:4]))
	case 0x40:
		return (4 + int(binary.BigEndian.Uint16(b[2:4])) + 3) &^ 3
	}
	return 0
}

// FuzzFramedConnFrame feeds a byte stream to framedConn.frame (through Read) in one piece and
// cut in two. With nothing to intercept, pion must get a prefix of the stream, the same one
// however it was cut, and what is held back must be the rest: at most one incomplete frame.
func FuzzFramedConnFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		whole, c := readAll(t, data)
		// Reading stops at a frame too long to pass: then what was read is a prefix.
		if seen := append(append([]byte(nil), whole...), c.in...); !bytes.Equal(seen, data) && (c.err == nil || !bytes.HasPrefix(data, seen)) {
			t.Fatalf("pion got % x and % x is held back (%v); together they are not the stream % x", whole, c.in, c.err, data)
		}
		switch {
		case c.err != nil:
			// A frame longer than pion reads ends the stream: it is held back whole or not.
			if c.lost || len(c.in) < 4 || frameSize(c.in) <= maxStreamFrame {
				t.Fatalf("%v, holding back % x (framing lost: %v): want a frame longer than %d", c.err, c.in, c.lost, maxStreamFrame)
			}
		case len(c.in) > 0 && (c.lost || len(c.in) >= 4 && len(c.in) >= frameSize(c.in)):
			t.Fatalf("held back % x (framing lost: %v): want at most one incomplete frame", c.in, c.lost)
		case len(c.in) >= 4 && frameSize(c.in) > maxStreamFrame:
			t.Fatalf("held back % x without an error: a frame longer than %d must end the stream", c.in, maxStreamFrame)
		}
		k := int(cut) % (len(data) + 1)
		split, _ := readAll(t, data[:k], data[k:])
		if !bytes.Equal(split, whole) {
			t.Fatalf("cut at %d, pion got % x; in one piece % x", k, split, whole)
		}
		if w := c.Conn.(*chunkConn).written; len(w) > 0 {
			t.Fatalf("framedConn wrote % x to the client with nothing to intercept", w)
		}
	})
}

// A connection gets its 16 KB read buffer only once a complete STUN message or ChannelData
// on a valid channel has arrived: until then a few small reads do, so that silent or garbage
// connections cost little.
func TestFramedConnBufferAfterValidFrame(t *testing.T) {
	binding := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	noCookie := append([]byte(nil), binding...)
	noCookie[4] = 0
	for _, tc := range []struct {
		name   string
		stream []byte
		want   bool
	}{
		{name: "nothing", want: false},
		{name: "half a header", stream: binding[:10], want: false},
		{name: "STUN without the magic cookie", stream: noCookie, want: false},
		{name: "ChannelData outside 0x4000-0x4FFF", stream: []byte{0x50, 0x00, 0x00, 0x04, 1, 2, 3, 4}, want: false},
		{name: "Binding request", stream: binding, want: true},
		{name: "ChannelData", stream: []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := readAll(t, tc.stream)
			if got := c.buf != nil; got != tc.want {
				t.Fatalf("read buffer made: %v, want %v", got, tc.want)
			}
		})
	}
}
