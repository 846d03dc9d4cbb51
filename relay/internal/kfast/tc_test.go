//go:build linux

package kfast

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/avedge/avedge/relay/internal/kfast/nstest"
)

// The tc variant (avedge_relay_tc, for loopback) on crafted packets with BPF_PROG_RUN.

// tcx verdicts.
const (
	tcOK   = 0          // TCX_PASS: relayed, delivered
	tcShot = 2          // TCX_DROP
	tcNext = 0xffffffff // TCX_NEXT (-1): left alone, to the next program and the stack
)

// loMAC is lo's link address, and a frame's on lo.
var loMAC = make([]byte, 6)

// loFams are the loopback topologies: everything on 127.0.0.0/8 or ::1; off is a peer that is
// not on loopback.
var loFams = []struct {
	fam
	off netip.AddrPort
}{
	{fam{name: "ipv4",
		client: netip.MustParseAddrPort("127.0.0.2:40000"), listen: netip.MustParseAddrPort("127.0.0.1:3478"),
		relay: netip.MustParseAddrPort("127.0.0.1:50000"), peer: netip.MustParseAddrPort("127.0.0.3:40001"),
	}, netip.MustParseAddrPort("10.9.0.3:40002")},
	{fam{name: "ipv6",
		client: netip.MustParseAddrPort("[::1]:40000"), listen: netip.MustParseAddrPort("[::1]:3478"),
		relay: netip.MustParseAddrPort("[::1]:50000"), peer: netip.MustParseAddrPort("[::1]:40001"),
	}, netip.MustParseAddrPort("[fd09::3]:40002")},
}

// runTC runs the tc program once on frame in (as BPF_PROG_RUN builds an skb: checksum not
// partial).
func runTC(t *testing.T, o *Offload, in []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := o.objs.AvedgeRelayTc.Run(&opts)
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret, opts.DataOut
}

func TestTCRelay(t *testing.T) {
	e := &env{o: newOffload(t)}
	for _, f := range loFams {
		t.Run(f.name, func(t *testing.T) {
			c := e.bind(t, f.fam, 0x4001, f.peer, true)
			tests := []struct {
				name    string
				in      pkt
				partial bool // the sender left the checksum to the device (lo: always)
				want    pkt
				counted Counters
			}{
				{"client to peer", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(160), 0)}, false,
					pkt{src: f.relay, dst: f.peer, payload: data(160)}, Counters{C2PPackets: 1, C2PBytes: 160}},
				{"client to peer, partial checksum", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(160), 0)}, true,
					pkt{src: f.relay, dst: f.peer, payload: data(160)}, Counters{C2PPackets: 1, C2PBytes: 160}},
				{"client to peer, odd length, 3 bytes padding, partial", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(5), 3)}, true,
					pkt{src: f.relay, dst: f.peer, payload: data(5)}, Counters{C2PPackets: 1, C2PBytes: 5}},
				{"client to peer, 2 bytes padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(6), 2)}, false,
					pkt{src: f.relay, dst: f.peer, payload: data(6)}, Counters{C2PPackets: 1, C2PBytes: 6}},
				{"client to peer, 1 byte padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(7), 1)}, false,
					pkt{src: f.relay, dst: f.peer, payload: data(7)}, Counters{C2PPackets: 1, C2PBytes: 7}},
				{"client to peer, empty", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, nil, 0)}, false,
					pkt{src: f.relay, dst: f.peer, payload: []byte{}}, Counters{C2PPackets: 1}},
				{"client to peer, 1536 bytes", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(1536), 0)}, true,
					pkt{src: f.relay, dst: f.peer, payload: data(1536)}, Counters{C2PPackets: 1, C2PBytes: 1536}},
				{"peer to client", pkt{src: f.peer, dst: f.relay, payload: data(160)}, false,
					pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, data(160), 0)}, Counters{P2CPackets: 1, P2CBytes: 160}},
				{"peer to client, odd length", pkt{src: f.peer, dst: f.relay, payload: data(1199)}, false,
					pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, data(1199), 0)}, Counters{P2CPackets: 1, P2CBytes: 1199}},
				{"peer to client, 3000 bytes", pkt{src: f.peer, dst: f.relay, payload: data(3000)}, false,
					pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, data(3000), 0)}, Counters{P2CPackets: 1, P2CBytes: 3000}},
				{"peer to client, empty", pkt{src: f.peer, dst: f.relay, payload: nil}, false,
					pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, nil, 0)}, Counters{P2CPackets: 1}},
			}
			if f.client.Addr().Is4() {
				tests = append(tests, []struct {
					name    string
					in      pkt
					partial bool
					want    pkt
					counted Counters
				}{
					{"client to peer, no UDP checksum", pkt{src: f.client, dst: f.listen, noCsum: true, payload: channelData(0x4001, data(33), 3)}, false,
						pkt{src: f.relay, dst: f.peer, payload: data(33), noCsum: true}, Counters{C2PPackets: 1, C2PBytes: 33}},
					{"client to peer, no UDP checksum, 3000 bytes", pkt{src: f.client, dst: f.listen, noCsum: true, payload: channelData(0x4001, data(3000), 0)}, false,
						pkt{src: f.relay, dst: f.peer, payload: data(3000), noCsum: true}, Counters{C2PPackets: 1, C2PBytes: 3000}},
					{"peer to client, no UDP checksum", pkt{src: f.peer, dst: f.relay, noCsum: true, payload: data(33)}, false,
						pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, data(33), 0), noCsum: true}, Counters{P2CPackets: 1, P2CBytes: 33}},
				}...)
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.in.srcMAC, tt.in.dstMAC = loMAC, loMAC
					in := tt.in.bytes()
					if tt.partial {
						in = partial(t, in)
					}
					before := e.counters(t, c.Slot)
					action, out := runTC(t, e.o, in)
					if action != tcOK {
						t.Fatalf("action %d, want TC_ACT_OK", action)
					}
					e.checkRelayed(t, out, tt.want, c.Slot, before, tt.counted)
					if !bytes.Equal(out[:12], make([]byte, 12)) {
						t.Errorf("MACs changed: % x", out[:12])
					}
				})
			}
		})
	}
}

// TestTCDropsAndPasses: what the tc variant discards (each reason, counted) and what it leaves
// to the stack untouched (each reason, counted).
func TestTCDropsAndPasses(t *testing.T) {
	e := &env{o: newOffload(t)}
	for _, f := range loFams {
		t.Run(f.name, func(t *testing.T) {
			e.bind(t, f.fam, 0x4001, f.peer, true)
			noPerm := netip.AddrPortFrom(f.peer.Addr(), 40009)
			if f.peer.Addr().Is4() {
				noPerm = netip.MustParseAddrPort("127.0.0.9:40009")
			}
			e.bind(t, f.fam, 0x4002, noPerm, false)
			e.bind(t, f.fam, 0x4003, f.off, true)
			// A client of a wildcard listener: the tc variant has no route lookup to find
			// the source to answer from.
			any := netip.IPv4Unspecified()
			if f.client.Addr().Is6() {
				any = netip.IPv6Unspecified()
			}
			wf := f.fam
			wf.client = netip.AddrPortFrom(f.client.Addr(), 40100)
			wf.listen = netip.AddrPortFrom(any, 3479)
			wf.relay = netip.AddrPortFrom(f.relay.Addr(), 50001)
			e.bind(t, wf, 0x4004, f.peer, true)
			stun := make([]byte, 20)
			stun[1] = 1
			none := reason{NumDrops, NumPasses}
			tests := []dropCase{
				{"channel without permission", pkt{src: f.client, dst: f.listen, payload: channelData(0x4002, data(10), 0)}, tcShot, reason{DropNoPermission, NumPasses}},
				{"peer without permission", pkt{src: noPerm, dst: f.relay, payload: data(10)}, tcShot, reason{DropNoPermission, NumPasses}},
				{"ChannelData longer than its datagram", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0)[:13]}, tcShot, reason{DropMalformed, NumPasses}},
				{"STUN from a client", pkt{src: f.client, dst: f.listen, payload: stun}, tcNext, reason{NumDrops, PassNoEntry}},
				{"unbound channel", pkt{src: f.client, dst: f.listen, payload: channelData(0x4009, data(10), 0)}, tcNext, reason{NumDrops, PassNoEntry}},
				{"peer without channel", pkt{src: netip.AddrPortFrom(f.peer.Addr(), 1), dst: f.relay, payload: data(10)}, tcNext, reason{NumDrops, PassNoEntry}},
				{"more than 3 bytes of padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(8), 4)}, tcNext, reason{NumDrops, PassPadding}},
				{"peer not on loopback", pkt{src: f.client, dst: f.listen, payload: channelData(0x4003, data(10), 0)}, tcNext, reason{NumDrops, PassNoRoute}},
				{"peer to a client of a wildcard listener", pkt{src: f.peer, dst: wf.relay, payload: data(10)}, tcNext, reason{NumDrops, PassNoRoute}},
				{"client to peer, data over 1536 bytes", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(1537), 0)}, tcNext, reason{NumDrops, PassMTU}},
				{"bad UDP length", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0), lenDelta: 2}, tcNext, none},
			}
			tests = append(tests, fragmentCases(f.client, f.listen, tcNext)...)
			e.runDropCases(t, tests, loMAC, loMAC, tcNext, true, func(t *testing.T, in []byte) (uint32, []byte) { return runTC(t, e.o, in) })
		})
	}
}

// TestAttachLoopback attaches the tc variant to lo in a namespace the test makes, installs a
// channel by hand (no relay process: what arrives was relayed in the kernel) and sends real
// datagrams through it both ways, from sockets on lo, whose checksums the kernel leaves
// partial. After Close, a ChannelData message reaches the listen address unrelayed.
func TestAttachLoopback(t *testing.T) {
	o := newOffload(t)
	ns := nstest.New(t, "kflo")
	var mode Mode
	var err error
	ns.Do(func() { mode, err = o.Attach(ns.Ifindex("lo"), ModeTCX) })
	if err != nil {
		t.Fatal(err)
	}
	if mode != ModeTCX {
		t.Fatalf("mode %v, want tcx", mode)
	}
	chans := []Channel{
		{Num: 0x4123, Client: netip.MustParseAddrPort("127.0.0.2:40000"), Listen: netip.MustParseAddrPort("127.0.0.1:3478"),
			Relay: netip.MustParseAddrPort("127.0.0.1:50000"), Peer: netip.MustParseAddrPort("127.0.0.3:40001")},
		{Num: 0x4124, Client: netip.MustParseAddrPort("[::1]:40000"), Listen: netip.MustParseAddrPort("[::1]:3478"),
			Relay: netip.MustParseAddrPort("[::1]:50000"), Peer: netip.MustParseAddrPort("[::1]:40001")},
	}
	for _, ch := range chans {
		t.Run(map[bool]string{true: "ipv4", false: "ipv6"}[ch.Client.Addr().Is4()], func(t *testing.T) {
			if ch.Slot, err = o.NewSlot(0); err != nil {
				t.Fatal(err)
			}
			if err := errors.Join(o.PutChannel(ch), o.Permit(ch.Slot, ch.Peer.Addr())); err != nil {
				t.Fatal(err)
			}
			const n = 100
			bytesSent := loopRoundTrips(t, ns, ch, n)
			got, err := o.Counters(ch.Slot)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Counters{n, bytesSent, n, bytesSent}); got != want {
				t.Errorf("counters %+v, want %+v", got, want)
			}
		})
	}

	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	ch := chans[0]
	var client, lis *net.UDPConn
	ns.Do(func() {
		if client, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ch.Client)); err != nil {
			return
		}
		lis, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ch.Listen))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	defer lis.Close()
	msg := channelData(ch.Num, data(20), 0)
	if _, err := client.WriteToUDPAddrPort(msg, ch.Listen); err != nil {
		t.Fatal(err)
	}
	lis.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	k, _, err := lis.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.Equal(buf[:k], msg) {
		t.Fatalf("after Close, the listen address got %d bytes (%v), want the ChannelData message unrelayed", k, err)
	}
}

// loopRoundTrips sends n datagrams (0 to 1499 bytes, every padding) through channel ch both
// ways, from sockets in ns, and checks what arrives byte for byte. It returns the data bytes
// sent each way.
func loopRoundTrips(t *testing.T, ns *nstest.NS, ch Channel, n int) uint64 {
	t.Helper()
	return roundTrips(t, ns, ch, n, 1500)
}

// roundTrips is loopRoundTrips with datagrams of 0 to size-1 bytes.
func roundTrips(t *testing.T, ns *nstest.NS, ch Channel, n, size int) uint64 {
	t.Helper()
	var client, peer *net.UDPConn
	var err error
	ns.Do(func() {
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
	buf := make([]byte, 4096)
	var bytesSent uint64
	for i := range n {
		msg := data(i * 29 % size)
		bytesSent += uint64(len(msg))
		if _, err := client.WriteToUDPAddrPort(channelData(ch.Num, msg, (4-len(msg)%4)%4), ch.Listen); err != nil {
			t.Fatal(err)
		}
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("client → peer #%d (%d bytes): %v", i, len(msg), err)
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
			t.Fatalf("peer → client #%d (%d bytes): %v", i, len(msg), err)
		}
		if want := channelData(ch.Num, msg, 0); from != ch.Listen || !bytes.Equal(buf[:k], want) {
			t.Fatalf("peer → client #%d: %d bytes from %v, want %d from %v", i, k, from, len(want), ch.Listen)
		}
	}
	return bytesSent
}

// TestLoopbackTwoRelays: two relays' programs on one lo (tcx runs them in turn). The first
// leaves what it does not know to the next (TCX_NEXT), so the second relays its own channel.
func TestLoopbackTwoRelays(t *testing.T) {
	first, second := newOffload(t), newOffload(t)
	ns := nstest.New(t, "kflo2")
	for _, o := range []*Offload{first, second} {
		var err error
		ns.Do(func() { _, err = o.Attach(ns.Ifindex("lo"), ModeTCX) })
		if err != nil {
			t.Fatal(err)
		}
	}
	ch := Channel{Num: 0x4321, Client: netip.MustParseAddrPort("127.0.0.2:40000"), Listen: netip.MustParseAddrPort("127.0.0.1:3478"),
		Relay: netip.MustParseAddrPort("127.0.0.1:50000"), Peer: netip.MustParseAddrPort("127.0.0.3:40001")}
	var err error
	if ch.Slot, err = second.NewSlot(0); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(second.PutChannel(ch), second.Permit(ch.Slot, ch.Peer.Addr())); err != nil {
		t.Fatal(err)
	}
	const n = 20
	sent := loopRoundTrips(t, ns, ch, n)
	if got, err := second.Counters(ch.Slot); err != nil || got != (Counters{n, sent, n, sent}) {
		t.Errorf("second relay's counters %+v (%v), want %d packets and %d bytes each way", got, err, n, sent)
	}
	passes, err := first.Passes()
	if err != nil {
		t.Fatal(err)
	}
	if passes[PassNoEntry] < 2*n {
		t.Errorf("the first relay left %d packets to the next as unknown, want at least %d", passes[PassNoEntry], 2*n)
	}
}
