//go:build linux

package relay

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// newRawAllocation is a raw client with fresh REST credentials and an allocation on s's UDP
// listener.
func newRawAllocation(t testing.TB, s *Server, user string) *rawClient {
	t.Helper()
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	c := dialRaw(t, s.addrOf(UDP), username, password)
	if err := c.allocate(); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	return c
}

// wantTraffic checks one traffic counter, after polling until it has at least the packets
// wanted (a slow-path counter is bumped just after the send that a reader may already have
// seen).
func wantTraffic(t testing.TB, s *Server, dir metrics.Direction, path metrics.Path, packets, bytes uint64) {
	t.Helper()
	pollUntil(t, "traffic counter", func() bool { return traffic(s, dir, path).Packets >= packets })
	if got := traffic(s, dir, path); got.Packets != packets || got.Bytes != bytes {
		t.Errorf("Traffic[%s][%d] = %d packets, %d bytes; want %d, %d", dir, path, got.Packets, got.Bytes, packets, bytes)
	}
}

// RFC 8656 §11: "the Send mechanism" — a Send indication from the client becomes a UDP
// datagram from the relayed address to the peer, and a datagram from a permitted peer with
// no channel comes back as a Data indication.
func TestSendAndDataIndications(t *testing.T) { forEachDataPath(t, testSendAndDataIndications) }

func testSendAndDataIndications(t *testing.T, path DataPath) {
	for _, tc := range []struct {
		name string
		n, s int
	}{
		{name: "small", n: 20, s: 1},
		{name: "unaligned", n: 20, s: 161},
		{name: "mtu", n: 10, s: 1200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServerOn(t, path, nil)
			c := newRawAllocation(t, s, "alice")
			peer := newUDPPeer(t, "127.0.0.1:0")
			if err := c.createPermission(peer.addr()); err != nil {
				t.Fatalf("CreatePermission: %v", err)
			}
			for i := 0; i < tc.n; i++ {
				out := payload(1, i, tc.s)
				if err := c.sendIndication(peer.addr(), out); err != nil {
					t.Fatal(err)
				}
				peer.expect(t, i, c.relayed, out)
				back := payload(2, i, tc.s)
				if err := peer.send(c.relayed, back); err != nil {
					t.Fatal(err)
				}
				pa, data, err := c.recvData()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if pa != peer.addr() {
					t.Fatalf("packet %d: XOR-PEER-ADDRESS %v, want %v", i, pa, peer.addr())
				}
				if !bytes.Equal(data, back) {
					t.Fatalf("packet %d: DATA % x, want % x", i, data, back)
				}
			}
			n, b := uint64(tc.n), uint64(tc.n*tc.s)
			wantTraffic(t, s, metrics.ClientToPeer, metrics.PathIndication, n, b)
			wantTraffic(t, s, metrics.PeerToClient, metrics.PathIndication, n, b)
			wantTraffic(t, s, metrics.ClientToPeer, metrics.PathChannel, 0, 0)
			wantTraffic(t, s, metrics.PeerToClient, metrics.PathChannel, 0, 0)
		})
	}
}

// RFC 8656 §12: ChannelData both ways on a channel the client chose, on the fast path.
func TestChannelDataBothWays(t *testing.T) { forEachDataPath(t, testChannelDataBothWays) }

func testChannelDataBothWays(t *testing.T, path DataPath) {
	for _, tc := range []struct {
		name string
		num  uint16
		n, s int
		pad  bool
	}{
		{name: "first channel", num: 0x4000, n: 20, s: 160},
		{name: "last channel unaligned padded", num: 0x4FFF, n: 20, s: 161, pad: true},
		{name: "unaligned unpadded", num: 0x4123, n: 20, s: 3},
		{name: "mtu", num: 0x4001, n: 10, s: 1200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServerOn(t, path, nil)
			c := newRawAllocation(t, s, "alice")
			peer := newUDPPeer(t, "127.0.0.1:0")
			if err := c.channelBind(tc.num, peer.addr()); err != nil {
				t.Fatalf("ChannelBind: %v", err)
			}
			if st := s.Stats(); st.Channels != 1 || st.Permissions != 1 {
				t.Fatalf("after ChannelBind: %d channels, %d permissions; want 1, 1", st.Channels, st.Permissions)
			}
			for i := 0; i < tc.n; i++ {
				out := payload(3, i, tc.s)
				if err := c.sendChannelData(tc.num, out, tc.pad); err != nil {
					t.Fatal(err)
				}
				peer.expect(t, i, c.relayed, out)
				back := payload(4, i, tc.s)
				if err := peer.send(c.relayed, back); err != nil {
					t.Fatal(err)
				}
				num, data, err := c.recvChannelData()
				if err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
				if num != tc.num {
					t.Fatalf("packet %d: channel %#x, want %#x", i, num, tc.num)
				}
				if !bytes.Equal(data, back) {
					t.Fatalf("packet %d: data % x, want % x", i, data, back)
				}
			}
			n, b := uint64(tc.n), uint64(tc.n*tc.s)
			wantTraffic(t, s, metrics.ClientToPeer, metrics.PathChannel, n, b)
			wantTraffic(t, s, metrics.PeerToClient, metrics.PathChannel, n, b)
			wantTraffic(t, s, metrics.ClientToPeer, metrics.PathIndication, 0, 0)
			wantTraffic(t, s, metrics.PeerToClient, metrics.PathIndication, 0, 0)
		})
	}
}

// RFC 8656 §12.4: "If the ChannelData message is received on a channel that is not bound to
// any peer, then the message is silently discarded." §12.6 / §11.3: a datagram from a peer
// with no permission is discarded too. Both are counted by reason.
func TestDropsCountedByReason(t *testing.T) { forEachDataPath(t, testDropsCountedByReason) }

func testDropsCountedByReason(t *testing.T, path DataPath) {
	t.Run("unbound channel", func(t *testing.T) {
		s := startServerOn(t, path, nil)
		c := newRawAllocation(t, s, "alice")
		peer := newUDPPeer(t, "127.0.0.1:0")
		if err := c.channelBind(0x4000, peer.addr()); err != nil {
			t.Fatalf("ChannelBind: %v", err)
		}
		if err := c.sendChannelData(0x4001, []byte("not bound"), true); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, "no_channel drop", func() bool { return s.Stats().Drops[metrics.DropNoChannel] == 1 })
		// The bound channel still works, and is the only thing the peer ever received.
		if err := c.sendChannelData(0x4000, []byte("bound"), true); err != nil {
			t.Fatal(err)
		}
		got, _, err := peer.recv(rawTimeout)
		if err != nil || string(got) != "bound" {
			t.Fatalf("peer got %q, %v; want %q", got, err, "bound")
		}
		if tr := traffic(s, metrics.ClientToPeer, metrics.PathChannel); tr.Packets != 1 || tr.Bytes != 5 {
			t.Errorf("channel traffic %+v, want 1 packet, 5 bytes", tr)
		}
	})
	t.Run("peer without permission", func(t *testing.T) {
		s := startServerOn(t, path, nil)
		c := newRawAllocation(t, s, "alice")
		stranger := newUDPPeer(t, "127.0.0.1:0")
		// Keep sending until the drop is counted: the first datagram may race the
		// allocation's entry into the fast-path table, and then pion drops it uncounted.
		deadline := time.Now().Add(3 * time.Second)
		for s.Stats().Drops[metrics.DropNoPermission] == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no no_permission drop counted within 3s")
			}
			if err := stranger.send(c.relayed, []byte("unsolicited")); err != nil {
				t.Fatal(err)
			}
			_, _, _ = stranger.recv(20 * time.Millisecond) // paces the loop; nothing is expected
		}
		if err := c.expectSilence(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if tr := s.Stats().Traffic; tr != ([metrics.NumDirections][metrics.NumPaths]metrics.Counter{}) {
			t.Errorf("traffic counted for dropped packets: %+v", tr)
		}
	})
	t.Run("permission is per IP", func(t *testing.T) {
		s := startServerOn(t, path, nil)
		c := newRawAllocation(t, s, "alice")
		friend := newUDPPeer(t, "127.0.0.1:0")
		other := newUDPPeer(t, "127.0.0.2:0") // skips where 127.0.0.2 is not routable
		if err := c.channelBind(0x4000, friend.addr()); err != nil {
			t.Fatalf("ChannelBind: %v", err)
		}
		if err := other.send(c.relayed, []byte("from another IP")); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, "no_permission drop", func() bool { return s.Stats().Drops[metrics.DropNoPermission] == 1 })
		if err := friend.send(c.relayed, []byte("friend")); err != nil {
			t.Fatal(err)
		}
		num, data, err := c.recvChannelData()
		if err != nil || num != 0x4000 || string(data) != "friend" {
			t.Fatalf("client got channel %#x %q, %v; want 0x4000 %q", num, data, err, "friend")
		}
	})
}

// RFC 8656 §12: "A channel binding lasts for 10 minutes unless refreshed"; §9: a permission
// lasts 300 seconds. With both shortened, the fast path must stop forwarding once pion lets
// them expire.
func TestChannelExpiryStopsFastPath(t *testing.T) { forEachDataPath(t, testChannelExpiryStopsFastPath) }

func testChannelExpiryStopsFastPath(t *testing.T, path DataPath) {
	s := startServerOn(t, path, func(c *Config) {
		c.ChannelLifetime = 300 * time.Millisecond
		c.PermissionLifetime = 300 * time.Millisecond
	})
	c := newRawAllocation(t, s, "alice")
	peer := newUDPPeer(t, "127.0.0.1:0")
	const num = 0x4abc
	if err := c.channelBind(num, peer.addr()); err != nil {
		t.Fatalf("ChannelBind: %v", err)
	}
	if err := c.sendChannelData(num, []byte("before"), false); err != nil {
		t.Fatal(err)
	}
	if got, _, err := peer.recv(rawTimeout); err != nil || string(got) != "before" {
		t.Fatalf("before expiry the peer got %q, %v", got, err)
	}
	pollUntil(t, "channel and permission expiry", func() bool {
		st := s.Stats()
		return st.Channels == 0 && st.Permissions == 0
	})
	before := s.Stats()

	if err := c.sendChannelData(num, []byte("after"), false); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "no_channel drop after expiry", func() bool {
		return s.Stats().Drops[metrics.DropNoChannel] == before.Drops[metrics.DropNoChannel]+1
	})
	if err := peer.send(c.relayed, []byte("late reply")); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "no_permission drop after expiry", func() bool {
		return s.Stats().Drops[metrics.DropNoPermission] == before.Drops[metrics.DropNoPermission]+1
	})
	if got, _, err := peer.recv(50 * time.Millisecond); err == nil {
		t.Fatalf("peer received %q after the channel expired", got)
	}
	if err := c.expectSilence(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if after := s.Stats(); after.Traffic != before.Traffic {
		t.Errorf("traffic counted after expiry: before %+v, after %+v", before.Traffic, after.Traffic)
	}
}

// RFC 8656 §7.3: a Refresh with lifetime 0 deletes the allocation. Its relay socket must
// really close (the io_uring loop closes it only once the socket's receive request has
// ended): the port can be bound again by anyone, and a packet sent to it is not relayed.
func TestDeletedAllocationClosesRelaySocket(t *testing.T) {
	forEachDataPath(t, testDeletedAllocationClosesRelaySocket)
}

func testDeletedAllocationClosesRelaySocket(t *testing.T, path DataPath) {
	s := startServerOn(t, path, func(c *Config) { c.PortQuarantine = -1 })
	c := newRawAllocation(t, s, "alice")
	peer := newUDPPeer(t, "127.0.0.1:0")
	if err := c.channelBind(0x4000, peer.addr()); err != nil {
		t.Fatalf("ChannelBind: %v", err)
	}
	if err := peer.send(c.relayed, []byte("live")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := c.recvChannelData(); err != nil || string(data) != "live" {
		t.Fatalf("before the delete the client got %q, %v", data, err)
	}
	if err := c.refresh(0); err != nil {
		t.Fatalf("Refresh lifetime 0: %v", err)
	}
	var pc net.PacketConn
	pollUntil(t, "the relay port to be free", func() bool {
		var err error
		pc, err = net.ListenPacket("udp4", c.relayed.String())
		return err == nil
	})
	defer pc.Close()
	if n := s.liveAllocations(); n != 0 {
		t.Fatalf("%d allocations after the delete, want 0", n)
	}
}
