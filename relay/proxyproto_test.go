package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

// proxyV2 builds a version 2 header: cmd 0 (LOCAL) or 1 (PROXY), famProto as on the wire,
// the addresses of src and dst in their family (none when famProto's family is AF_UNSPEC),
// then tlv.
func proxyV2(cmd, famProto byte, src, dst netip.AddrPort, tlv []byte) []byte {
	var body []byte
	switch famProto >> 4 {
	case 1:
		s, d := src.Addr().As4(), dst.Addr().As4()
		body = append(append(body, s[:]...), d[:]...)
	case 2:
		s, d := src.Addr().As16(), dst.Addr().As16()
		body = append(append(body, s[:]...), d[:]...)
	}
	if famProto>>4 == 1 || famProto>>4 == 2 {
		body = binary.BigEndian.AppendUint16(body, src.Port())
		body = binary.BigEndian.AppendUint16(body, dst.Port())
	}
	body = append(body, tlv...)
	h := append([]byte(proxyV2Sig), 0x20|cmd, famProto)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

var (
	ppClient4 = netip.MustParseAddrPort("203.0.113.7:40000")
	ppDst4    = netip.MustParseAddrPort("198.51.100.1:443")
	ppClient6 = netip.MustParseAddrPort("[2001:db8::7]:40001")
	ppDst6    = netip.MustParseAddrPort("[2001:db8::1]:443")
)

// validProxyHeaders are headers the parser accepts, with what they say.
var validProxyHeaders = []struct {
	name string
	raw  []byte
	want proxyHeader
}{
	{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n"), proxyHeader{src: ppClient4, dst: ppDst4}},
	{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 40001 443\r\n"), proxyHeader{src: ppClient6, dst: ppDst6}},
	{"v1 TCP6 mapped", []byte("PROXY TCP6 ::ffff:203.0.113.7 ::ffff:198.51.100.1 40000 443\r\n"), proxyHeader{src: ppClient4, dst: ppDst4}},
	{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), proxyHeader{local: true}},
	{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff 56324 443\r\n"), proxyHeader{local: true}},
	{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		proxyHeader{src: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), dst: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v2 INET", proxyV2(1, 0x11, ppClient4, ppDst4, nil), proxyHeader{src: ppClient4, dst: ppDst4}},
	{"v2 INET6", proxyV2(1, 0x21, ppClient6, ppDst6, nil), proxyHeader{src: ppClient6, dst: ppDst6}},
	{"v2 INET6 mapped", proxyV2(1, 0x21, netip.AddrPortFrom(netip.AddrFrom16(ppClient4.Addr().As16()), 40000), netip.AddrPortFrom(netip.AddrFrom16(ppDst4.Addr().As16()), 443), nil),
		proxyHeader{src: ppClient4, dst: ppDst4}},
	// AWS NLB's VPC endpoint id TLV (type 0xEA) and HAProxy's unique id (0x05): skipped.
	{"v2 INET with TLVs", proxyV2(1, 0x11, ppClient4, ppDst4, append([]byte{0xEA, 0, 9, 1, 'v', 'p', 'c', 'e', '-', 'a', 'b', 'c'}, 0x05, 0, 2, 'i', 'd')),
		proxyHeader{src: ppClient4, dst: ppDst4}},
	{"v2 LOCAL", proxyV2(0, 0x00, netip.AddrPort{}, netip.AddrPort{}, nil), proxyHeader{local: true}},
	{"v2 LOCAL with addresses", proxyV2(0, 0x11, ppClient4, ppDst4, nil), proxyHeader{local: true}},
	{"v2 PROXY UNSPEC", proxyV2(1, 0x00, netip.AddrPort{}, netip.AddrPort{}, nil), proxyHeader{local: true}},
	{"v2 PROXY UNIX", proxyV2(1, 0x31, netip.AddrPort{}, netip.AddrPort{}, make([]byte, 216)), proxyHeader{local: true}},
}

func TestParseProxyHeaderValid(t *testing.T) {
	client := []byte("client bytes")
	for _, tc := range validProxyHeaders {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := parseProxyHeader(append(bytes.Clone(tc.raw), client...))
			if err != nil || n != len(tc.raw) || h != tc.want {
				t.Fatalf("parse = %+v, %d, %v; want %+v, %d", h, n, err, tc.want, len(tc.raw))
			}
			// Every strict prefix asks for more: the relay waits rather than refuse.
			for k := range len(tc.raw) {
				if _, _, err := parseProxyHeader(tc.raw[:k]); !errors.Is(err, errProxyShort) {
					t.Fatalf("prefix of %d bytes: %v, want errProxyShort", k, err)
				}
			}
			// Read one byte at a time, and in one read with the client's bytes: the same
			// header, and the client's bytes handed back.
			for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(append(bytes.Clone(tc.raw), client...))),
				bytes.NewReader(append(bytes.Clone(tc.raw), client...))} {
				h, rest, err := readProxyHeader(r)
				if err != nil || h != tc.want {
					t.Fatalf("readProxyHeader = %+v, %v", h, err)
				}
				rest = append(rest, must(io.ReadAll(r))...)
				if !bytes.Equal(rest, client) {
					t.Fatalf("client bytes after the header: %q, want %q", rest, client)
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestParseProxyHeaderRefused(t *testing.T) {
	v2 := proxyV2(1, 0x11, ppClient4, ppDst4, nil)
	with := func(i int, b byte) []byte { c := bytes.Clone(v2); c[i] = b; return c }
	for _, tc := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"STUN Binding", []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42}, errProxyMissing},
		{"ChannelData", []byte{0x40, 0x00, 0x00, 0x04}, errProxyMissing},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, errProxyMissing},
		{"lower-case proxy", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), errProxyMissing},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), errProxyMissing},
		{"v1 UDP4", []byte("PROXY UDP4 203.0.113.7 198.51.100.1 40000 443\r\n"), errProxyBad},
		{"v1 TCP4 with IPv6", []byte("PROXY TCP4 2001:db8::7 198.51.100.1 40000 443\r\n"), errProxyBad},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 203.0.113.7 2001:db8::1 40000 443\r\n"), errProxyBad},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::1 40000 443\r\n"), errProxyBad},
		{"v1 port too big", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 65536 443\r\n"), errProxyBad},
		{"v1 signed port", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 +4000 443\r\n"), errProxyBad},
		{"v1 hex port", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 0x10 443\r\n"), errProxyBad},
		{"v1 two spaces", []byte("PROXY TCP4  203.0.113.7 198.51.100.1 40000 443\r\n"), errProxyBad},
		{"v1 trailing space", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443 \r\n"), errProxyBad},
		{"v1 missing port", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000\r\n"), errProxyBad},
		{"v1 LF alone", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\n"), errProxyBad},
		{"v1 no CRLF in 107 bytes", []byte("PROXY UNKNOWN " + strings.Repeat("x", 100)), errProxyBad},
		{"v1 empty", []byte("PROXY \r\n"), errProxyBad},
		{"v2 version 1", with(12, 0x11), errProxyBad},
		{"v2 version 3, short", []byte(proxyV2Sig + "\x31"), errProxyBad},
		{"v2 command 2", with(12, 0x22), errProxyBad},
		{"v2 family 4", with(13, 0x41), errProxyBad},
		{"v2 protocol 3", with(13, 0x13), errProxyBad},
		{"v2 DGRAM", with(13, 0x12), errProxyBad},
		{"v2 INET too short", append(append([]byte(proxyV2Sig), 0x21, 0x11, 0, 11), make([]byte, 11)...), errProxyBad},
		{"v2 INET6 too short", append(append([]byte(proxyV2Sig), 0x21, 0x21, 0, 12), make([]byte, 12)...), errProxyBad},
		{"v2 too long", append([]byte(proxyV2Sig), 0x21, 0x11, 0xFF, 0xFF), errProxyBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := parseProxyHeader(tc.raw); !errors.Is(err, tc.want) {
				t.Fatalf("parse = %v, want %v", err, tc.want)
			}
			if _, _, err := readProxyHeader(bytes.NewReader(tc.raw)); !errors.Is(err, tc.want) {
				t.Fatalf("readProxyHeader = %v, want %v", err, tc.want)
			}
		})
	}
}

// A header cut short by the connection's end or deadline is an error, not a wait.
func TestReadProxyHeaderCutShort(t *testing.T) {
	raw := proxyV2(1, 0x11, ppClient4, ppDst4, nil)
	_, _, err := readProxyHeader(bytes.NewReader(raw[:20]))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("readProxyHeader = %v, want io.ErrUnexpectedEOF", err)
	}
	// A v2 header of the longest length the relay takes, its TLVs all zeros, is read whole.
	long := append(append([]byte(proxyV2Sig), 0x21, 0x00), binary.BigEndian.AppendUint16(nil, proxyV2MaxLen)...)
	long = append(long, make([]byte, proxyV2MaxLen)...)
	if h, rest, err := readProxyHeader(iotest.HalfReader(bytes.NewReader(append(long, 'x')))); err != nil || !h.local || len(rest) > 1 {
		t.Fatalf("longest header: %+v %q %v", h, rest, err)
	}
}

// FuzzParseProxyHeader: any bytes parse without panic; a header accepted is no longer than
// the input and than maxProxyHeader, parses the same alone, and each of its strict prefixes
// asks for more (so that the relay never decides on part of a header); readProxyHeader agrees
// with parseProxyHeader and hands back exactly the bytes after the header.
func FuzzParseProxyHeader(f *testing.F) {
	for _, tc := range validProxyHeaders {
		f.Add(tc.raw)
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nrest"))
	f.Add([]byte(proxyV2Sig + "\x21\x11\x00\x0c"))
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := parseProxyHeader(b)
		switch {
		case err == nil:
			if n <= 0 || n > len(b) || n > maxProxyHeader {
				t.Fatalf("accepted %d bytes of %d", n, len(b))
			}
			if h2, n2, err2 := parseProxyHeader(b[:n]); err2 != nil || n2 != n || h2 != h {
				t.Fatalf("the header alone parses as %+v %d %v, with what follows as %+v %d", h2, n2, err2, h, n)
			}
			if _, _, err := parseProxyHeader(b[:n-1]); !errors.Is(err, errProxyShort) {
				t.Fatalf("a strict prefix: %v, want errProxyShort", err)
			}
			if !h.local && (!h.src.IsValid() || !h.dst.IsValid() || h.src.Addr().Is4In6()) {
				t.Fatalf("accepted a header naming %v → %v", h.src, h.dst)
			}
		case errors.Is(err, errProxyShort):
			if len(b) >= maxProxyHeader {
				t.Fatalf("%d bytes still short", len(b))
			}
		case errors.Is(err, errProxyMissing), errors.Is(err, errProxyBad):
		default:
			t.Fatalf("unexpected error %v", err)
		}
		rh, rest, rerr := readProxyHeader(iotest.HalfReader(bytes.NewReader(b)))
		switch {
		case err == nil:
			if rerr != nil || rh != h || !bytes.HasPrefix(b[n:], rest) {
				t.Fatalf("readProxyHeader = %+v %q %v; parse said %+v after %d bytes", rh, rest, rerr, h, n)
			}
		case rerr == nil:
			t.Fatalf("readProxyHeader accepted %+v where parse said %v", rh, err)
		}
	})
}

// BenchmarkReadProxyHeader: the cost per connection of reading a header (plus the client's
// first bytes handed back) on a PROXY protocol listener, beside a connection's accept and
// handshake.
func BenchmarkReadProxyHeader(b *testing.B) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n")},
		{"v2", proxyV2(1, 0x11, ppClient4, ppDst4, nil)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := append(bytes.Clone(tc.raw), make([]byte, 20)...)
			r := bytes.NewReader(in)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.raw)))
			for b.Loop() {
				r.Reset(in)
				if _, _, err := readProxyHeader(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
