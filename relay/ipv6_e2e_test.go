//go:build linux

package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
)

// requireIPv6Loopback skips the test where ::1 cannot be bound (IPv6 disabled, or a
// container without it).
func requireIPv6Loopback(t *testing.T) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("::1 is not configured on this machine (%v): skipping the IPv6 test", err)
	}
	c.Close()
}

// RFC 6156 / RFC 8656 §7.2: a client on IPv6 that asks for nothing else gets a relayed
// address of its own family; data flows to an IPv6 peer both ways.
func TestIPv6Allocation(t *testing.T) {
	requireIPv6Loopback(t)
	v6 := netip.MustParseAddr("::1")
	s := startServer(t, func(c *Config) {
		c.Listeners = []ListenerConfig{{Network: UDP, Addr: netip.AddrPortFrom(v6, 0)}}
		c.RelayIPs = []netip.Addr{v6}
	})
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))

	t.Run("pion client", func(t *testing.T) {
		c := newClientWith(t, s.addrOf(UDP), "udp6", "[::1]:0", username, password)
		mapped, err := c.SendBindingRequest()
		if err != nil {
			t.Fatalf("binding: %v", err)
		}
		if ip := mapped.(*net.UDPAddr).IP; !ip.Equal(net.IPv6loopback) {
			t.Fatalf("reflexive address %v, want ::1", mapped)
		}
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate: %v", err)
		}
		t.Cleanup(func() { relay.Close() })
		ra := relay.LocalAddr().(*net.UDPAddr)
		if !ra.IP.Equal(net.IPv6loopback) || ra.Port < 20000 || ra.Port > 29999 {
			t.Fatalf("relayed address %v, want [::1]:20000-29999", ra)
		}
		if st := s.Stats(); st.Allocations[metrics.TransportUDP][metrics.FamilyIPv6] != 1 {
			t.Fatalf("allocations %v, want one udp/ipv6", st.Allocations)
		}
		peer := testnet.Echo(t, "udp6", "[::1]:0")
		roundTrip(t, relay, peer.LocalAddr(), []byte("over ipv6"))
	})

	t.Run("raw channel", func(t *testing.T) {
		c := dialRaw(t, s.addrOf(UDP), username, password)
		if err := c.allocate(); err != nil {
			t.Fatalf("allocate: %v", err)
		}
		if c.relayed.Addr() != v6 {
			t.Fatalf("relayed address %v, want ::1", c.relayed)
		}
		peer := newUDPPeer(t, "[::1]:0")
		if err := c.channelBind(0x4006, peer.addr()); err != nil {
			t.Fatalf("ChannelBind: %v", err)
		}
		before := s.Stats().Traffic
		const n, size = 10, 200
		for i := 0; i < n; i++ {
			out := payload(6, i, size)
			if err := c.sendChannelData(0x4006, out, false); err != nil {
				t.Fatal(err)
			}
			peer.expect(t, i, c.relayed, out)
			if err := peer.send(c.relayed, out); err != nil {
				t.Fatal(err)
			}
			num, data, err := c.recvChannelData()
			if err != nil || num != 0x4006 || !bytes.Equal(data, out) {
				t.Fatalf("packet %d: client got %#x % x (%v)", i, num, data, err)
			}
		}
		after := s.Stats().Traffic
		for dir := metrics.ClientToPeer; dir <= metrics.PeerToClient; dir++ {
			d := after[dir][metrics.PathChannel]
			b := before[dir][metrics.PathChannel]
			if d.Packets-b.Packets != n || d.Bytes-b.Bytes != n*size {
				t.Errorf("%s channel traffic grew by %d packets, %d bytes; want %d, %d", dir, d.Packets-b.Packets, d.Bytes-b.Bytes, n, n*size)
			}
		}
	})
}
