//go:build linux

package kfast

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/relay/internal/kfast/nstest"
)

// TestAttachVeth attaches the program to one end of a veth pair between two namespaces the
// test makes, installs a channel by hand (no relay process: whatever arrives was relayed in
// the kernel) and sends real datagrams through it both ways, from sockets in the other
// namespace. Then Close must leave the interface without a program.
func TestAttachVeth(t *testing.T) {
	o := newOffload(t)
	r, c := vethPair(t)
	var mode, passMode Mode
	var err error
	r.Do(func() { mode, err = o.Attach(r.Ifindex("v0"), ModeAuto) })
	if err != nil {
		t.Fatal(err)
	}
	if mode != ModeNative {
		t.Errorf("veth attached in %v mode, want native", mode)
	}
	// XDP_TX into a veth needs NAPI on its far end: a program there gives it.
	c.Do(func() { passMode, err = o.AttachPass(c.Ifindex("v1"), ModeNative) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attached: relay end %v, far end %v", mode, passMode)
	if out := r.IP("link show dev v0"); !strings.Contains(out, "xdp") {
		t.Fatalf("no XDP program on v0 after Attach:\n%s", out)
	}

	for _, f := range []struct{ name, client, listen, relay, peer string }{
		{"ipv4", "10.9.0.2:40000", "10.9.0.1:3478", "10.9.0.1:50000", "10.9.0.3:40001"},
		{"ipv6", "[fd09::2]:40000", "[fd09::1]:3478", "[fd09::1]:50000", "[fd09::3]:40001"},
	} {
		t.Run(f.name, func(t *testing.T) {
			ch := Channel{Num: 0x4123, Client: netip.MustParseAddrPort(f.client), Listen: netip.MustParseAddrPort(f.listen),
				Relay: netip.MustParseAddrPort(f.relay), Peer: netip.MustParseAddrPort(f.peer)}
			if ch.Slot, err = o.NewSlot(0); err != nil {
				t.Fatal(err)
			}
			if err := o.PutChannel(ch); err != nil {
				t.Fatal(err)
			}
			if err := o.Permit(ch.Slot, ch.Peer.Addr()); err != nil {
				t.Fatal(err)
			}
			var client, peer *net.UDPConn
			c.Do(func() {
				if client, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ch.Client)); err != nil {
					return
				}
				peer, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ch.Peer))
			})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			defer peer.Close()

			const n = 100
			buf := make([]byte, 2048)
			for i := range n {
				msg := data(1 + i*13%1200)
				if _, err := client.WriteToUDPAddrPort(channelData(ch.Num, msg, (4-len(msg)%4)%4), ch.Listen); err != nil {
					t.Fatal(err)
				}
				peer.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, from, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("client → peer #%d: %v", i, err)
				}
				if from != ch.Relay || !bytes.Equal(buf[:k], msg) {
					t.Fatalf("client → peer #%d: %d bytes from %v, want %d from %v", i, k, from, len(msg), ch.Relay)
				}
				if _, err := peer.WriteToUDPAddrPort(msg, ch.Relay); err != nil {
					t.Fatal(err)
				}
				client.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, from, err = client.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("peer → client #%d: %v", i, err)
				}
				if want := channelData(ch.Num, msg, 0); from != ch.Listen || !bytes.Equal(buf[:k], want) {
					t.Fatalf("peer → client #%d: %d bytes from %v, want %d from %v", i, k, from, len(want), ch.Listen)
				}
			}
			got, err := o.Counters(ch.Slot)
			if err != nil {
				t.Fatal(err)
			}
			if got.C2PPackets != n || got.P2CPackets != n || got.C2PBytes != got.P2CBytes {
				t.Errorf("counters %+v, want %d packets each way and the same bytes", got, n)
			}
		})
	}

	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if out := r.IP("link show dev v0"); strings.Contains(out, "xdp") {
		t.Errorf("XDP program still on v0 after Close:\n%s", out)
	}
}

// vethPair makes namespaces r (the relay's: v0, 10.9.0.1, fd09::1, forwarding on, permanent
// neighbours) and c (clients' and peers': v1, .2 and .3 of both prefixes, transmit checksum
// offload off), joined by veth v0–v1.
func vethPair(tb testing.TB) (r, c *nstest.NS) {
	tb.Helper()
	return vethPairCsum(tb, true, false)
}

// vethPairCsum is vethPair with transmit checksum offload off on v1 (the senders' end) if
// senderOff, and on v0 (the relay's) if relayOff.
func vethPairCsum(tb testing.TB, senderOff, relayOff bool) (r, c *nstest.NS) {
	tb.Helper()
	r = nstest.New(tb, "kfr")
	c = nstest.New(tb, "kfc")
	r.IP("link add v0 type veth peer name v1 netns " + c.Name)
	r.IP("addr add 10.9.0.1/24 dev v0")
	r.IP("addr add fd09::1/64 dev v0 nodad")
	c.IP("addr add 10.9.0.2/24 dev v1")
	c.IP("addr add 10.9.0.3/24 dev v1")
	c.IP("addr add fd09::2/64 dev v1 nodad")
	c.IP("addr add fd09::3/64 dev v1 nodad")
	r.IP("link set v0 up")
	c.IP("link set v1 up")
	r.Sysctl("net.ipv4.conf.v0.forwarding", "1")
	r.Sysctl("net.ipv6.conf.v0.forwarding", "1")
	// Datagrams from local sockets leave a veth with their UDP checksum not computed; a real
	// NIC delivers them complete.
	if senderOff {
		c.TxChecksumOff("v1")
	}
	if relayOff {
		r.TxChecksumOff("v0")
	}
	mac := c.MAC("v1")
	for _, a := range []string{"10.9.0.2", "10.9.0.3", "fd09::2", "fd09::3"} {
		r.IP("neigh add " + a + " lladdr " + mac.String() + " dev v0 nud permanent")
	}
	return r, c
}

// BenchmarkVethRoundTrip: one ChannelData message client → relay → peer and the answer peer
// → relay → client per op, relayed by the program attached natively or generically to the
// relay's veth (with the pass program on the far end, which native XDP needs), or by the tc
// variant (with no program on the far end, as auto attaches it), with no relay process.
func BenchmarkVethRoundTrip(b *testing.B) {
	for _, m := range []Mode{ModeNative, ModeGeneric, ModeTCX} {
		for _, size := range []int{160, 1200} {
			b.Run(fmt.Sprintf("%v/%d", m, size), func(b *testing.B) { vethRoundTrips(b, m, size) })
		}
	}
}

// vethBench sets up a veth benchmark: the program attached by mode m on the relay's end (and
// the pass program on the far end, which native and generic XDP runs get), one channel, and
// the client's and the peer's sockets in the far end's namespace, closed when b ends.
func vethBench(b *testing.B, m Mode) (ch Channel, client, peer *net.UDPConn) {
	o := newOffload(b)
	r, c := vethPair(b)
	var err error
	r.Do(func() { _, err = o.Attach(r.Ifindex("v0"), m) })
	if err == nil && m != ModeTCX {
		c.Do(func() { _, err = o.AttachPass(c.Ifindex("v1"), ModeNative) })
	}
	if err != nil {
		b.Fatal(err)
	}
	ch = Channel{Num: 0x4001, Client: netip.MustParseAddrPort("10.9.0.2:40000"), Listen: netip.MustParseAddrPort("10.9.0.1:3478"),
		Relay: netip.MustParseAddrPort("10.9.0.1:50000"), Peer: netip.MustParseAddrPort("10.9.0.3:40001")}
	if ch.Slot, err = o.NewSlot(0); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(o.PutChannel(ch), o.Permit(ch.Slot, ch.Peer.Addr())); err != nil {
		b.Fatal(err)
	}
	c.Do(func() {
		if client, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ch.Client)); err != nil {
			return
		}
		peer, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ch.Peer))
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	return ch, client, peer
}

// vethRoundTrips is one BenchmarkVethRoundTrip run: mode m, size bytes of data each way.
func vethRoundTrips(b *testing.B, m Mode, size int) {
	ch, client, peer := vethBench(b, m)
	defer peer.Close()
	msg := channelData(ch.Num, data(size), 0)
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	client.SetReadDeadline(deadline)
	peer.SetReadDeadline(deadline)
	b.SetBytes(int64(2 * size))
	for b.Loop() {
		if _, err := client.WriteToUDPAddrPort(msg, ch.Listen); err != nil {
			b.Fatal(err)
		}
		n, _, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := peer.WriteToUDPAddrPort(buf[:n], ch.Relay); err != nil {
			b.Fatal(err)
		}
		if _, _, err := client.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
