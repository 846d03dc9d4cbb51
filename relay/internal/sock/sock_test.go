//go:build linux

package sock

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// Set and Decode are inverses, with IPv4-mapped addresses unmapped on the way in.
func TestRawAddrRoundTrip(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:3478", "127.0.0.1:3478"},
		{"[::1]:65535", "[::1]:65535"},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7:1"},
	} {
		var r RawAddr
		r.Set(netip.MustParseAddrPort(tc.in))
		if got := Decode(&r.buf); got.String() != tc.want {
			t.Errorf("Decode(Set(%s)) = %s, want %s", tc.in, got, tc.want)
		}
	}
	var zero [SockaddrSize]byte
	if got := Decode(&zero); got.IsValid() {
		t.Errorf("Decode of an unknown family = %v, want the zero AddrPort", got)
	}
}

// SendTo reaches a socket opened by OpenUDP, from the address LocalAddrPort reports.
func TestOpenSendTo(t *testing.T) {
	fd, err := OpenUDP(netip.MustParseAddrPort("127.0.0.1:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	from, err := LocalAddrPort(fd)
	if err != nil || from.Port() == 0 {
		t.Fatalf("LocalAddrPort = %v, %v", from, err)
	}
	dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var to RawAddr
	to.Set(dst.LocalAddr().(*net.UDPAddr).AddrPort())
	if err := SendTo(fd, []byte("avedge"), &to); err != nil {
		t.Fatal(err)
	}
	_ = dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, src, err := dst.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "avedge" || src != from {
		t.Fatalf("got %q from %v (%v), want \"avedge\" from %v", buf[:n], src, err, from)
	}
	if ap, ok := AddrPortOf(UDPAddr(from)); !ok || ap != from {
		t.Fatalf("AddrPortOf(UDPAddr(%v)) = %v, %v", from, ap, ok)
	}
}
