//go:build linux

package kfast

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/avedge/avedge/relay/internal/kfast/nstest"
)

// XDP actions.
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// newOffload loads the program, skipping the test with the reason when BPF is unavailable.
func newOffload(t testing.TB) *Offload { return newOffloadWith(t, Config{Slots: 64}) }

func newOffloadWith(t testing.TB, cfg Config) *Offload {
	t.Helper()
	o, err := New(cfg)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("BPF unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Close(); err != nil {
			t.Error(err)
		}
	})
	return o
}

var (
	clientMAC = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	peerMAC   = net.HardwareAddr{2, 0, 0, 0, 0, 3}
	peer2MAC  = net.HardwareAddr{2, 0, 0, 0, 0, 0x13}
)

// fam is one address family's addresses of the test topology: the relay's interface r0 faces
// the client and peer, r2 a second peer (packets to it are redirected).
type fam struct {
	name                                         string
	client, listen, relay, peer, peer2, unrouted netip.AddrPort
	mtuPayload                                   int // largest UDP payload that fits r0's MTU
}

var fams = []fam{
	{
		name:   "ipv4",
		client: netip.MustParseAddrPort("10.7.0.2:40000"), listen: netip.MustParseAddrPort("10.7.0.1:3478"),
		relay: netip.MustParseAddrPort("10.7.0.1:50000"), peer: netip.MustParseAddrPort("10.7.0.3:40001"),
		peer2: netip.MustParseAddrPort("10.8.0.3:40002"), unrouted: netip.MustParseAddrPort("10.7.0.9:40003"),
		mtuPayload: 1500 - 28,
	},
	{
		name:   "ipv6",
		client: netip.MustParseAddrPort("[fd07::2]:40000"), listen: netip.MustParseAddrPort("[fd07::1]:3478"),
		relay: netip.MustParseAddrPort("[fd07::1]:50000"), peer: netip.MustParseAddrPort("[fd07::3]:40001"),
		peer2: netip.MustParseAddrPort("[fd08::3]:40002"), unrouted: netip.MustParseAddrPort("[fd07::9]:40003"),
		mtuPayload: 1500 - 48,
	},
}

// env is a namespace with the relay's interfaces, and the program loaded.
type env struct {
	o            *Offload
	ns           *nstest.NS
	r0, r2       int
	r0MAC, r2MAC net.HardwareAddr
}

func newEnv(t *testing.T) *env { return newEnvWith(t, Config{Slots: 64}) }

func newEnvWith(t *testing.T, cfg Config) *env {
	t.Helper()
	o := newOffloadWith(t, cfg)
	ns := nstest.New(t, "kfrun")
	ns.IP("link add r0 type veth peer name r1")
	ns.IP("link add r2 type veth peer name r3")
	for _, l := range []string{"r0", "r1", "r2", "r3"} {
		ns.IP("link set " + l + " up")
	}
	ns.IP("addr add 10.7.0.1/24 dev r0")
	ns.IP("addr add fd07::1/64 dev r0 nodad")
	ns.IP("addr add 10.8.0.1/24 dev r2")
	ns.IP("addr add fd08::1/64 dev r2 nodad")
	for _, l := range []string{"r0", "r2"} { // routing-table mode: the helper needs forwarding
		ns.Sysctl("net.ipv4.conf."+l+".forwarding", "1")
		ns.Sysctl("net.ipv6.conf."+l+".forwarding", "1")
	}
	for _, f := range fams {
		ns.IP("neigh add " + f.client.Addr().String() + " lladdr " + clientMAC.String() + " dev r0 nud permanent")
		ns.IP("neigh add " + f.peer.Addr().String() + " lladdr " + peerMAC.String() + " dev r0 nud permanent")
		ns.IP("neigh add " + f.peer2.Addr().String() + " lladdr " + peer2MAC.String() + " dev r2 nud permanent")
	}
	return &env{o: o, ns: ns, r0: ns.Ifindex("r0"), r2: ns.Ifindex("r2"), r0MAC: ns.MAC("r0"), r2MAC: ns.MAC("r2")}
}

// xdpMD is struct xdp_md, the context BPF_PROG_RUN takes.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// run runs the relay program once on frame in as if it arrived on r0, in the namespace.
func (e *env) run(t *testing.T, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	var ret uint32
	var err error
	e.ns.Do(func() {
		opts := ebpf.RunOptions{Data: in, DataOut: out, Context: xdpMD{DataEnd: uint32(len(in)), IngressIfindex: uint32(e.r0)}}
		ret, err = e.o.objs.AvedgeRelay.Run(&opts)
		out = opts.DataOut
	})
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret, out
}

// bind installs a channel client → peer on a new slot, with a permission for the peer's IP
// if permit.
func (e *env) bind(t *testing.T, f fam, num uint16, peer netip.AddrPort, permit bool) Channel {
	t.Helper()
	s, err := e.o.NewSlot(0)
	if err != nil {
		t.Fatal(err)
	}
	c := Channel{Slot: s, Num: num, Client: f.client, Listen: f.listen, Relay: f.relay, Peer: peer}
	if err := e.o.PutChannel(c); err != nil {
		t.Fatal(err)
	}
	if permit {
		if err := e.o.Permit(s, peer.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := errors.Join(e.o.DeleteChannel(c), e.o.Revoke(s, peer.Addr())); err != nil {
			t.Error(err)
		}
		e.o.FreeSlot(s)
	})
	return c
}

func (e *env) counters(t *testing.T, s uint32) Counters {
	t.Helper()
	c, err := e.o.Counters(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reason is what a crafted packet is counted as: a drop reason, a pass reason, or neither
// (NumDrops, NumPasses).
type reason struct {
	drop DropReason
	pass PassReason
}

// checkReasons checks that between the counts (d0, p0) and (d1, p1) exactly why's drop or
// pass reason rose, by one, and no other.
func checkReasons(t *testing.T, why reason, d0, d1 [NumDrops]uint64, p0, p1 [NumPasses]uint64) {
	t.Helper()
	for r := range NumDrops {
		want := uint64(0)
		if r == why.drop {
			want = 1
		}
		if d1[r]-d0[r] != want {
			t.Errorf("drops[%d] += %d, want %d", r, d1[r]-d0[r], want)
		}
	}
	for r := range NumPasses {
		want := uint64(0)
		if r == why.pass {
			want = 1
		}
		if p1[r]-p0[r] != want {
			t.Errorf("passes[%v] += %d, want %d", r, p1[r]-p0[r], want)
		}
	}
}

func (e *env) reasons(t *testing.T) ([NumDrops]uint64, [NumPasses]uint64) {
	t.Helper()
	d, err := e.o.Drops()
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.o.Passes()
	if err != nil {
		t.Fatal(err)
	}
	return d, p
}

func data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// TestRelay runs each relayed path on crafted packets and checks the result from scratch:
// addresses, MACs, hop limit, lengths and checksums, and the payload byte for byte.
func TestRelay(t *testing.T) {
	e := newEnv(t)
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			c := e.bind(t, f, 0x4001, f.peer, true)
			c2 := e.bind(t, f, 0x4FFF, f.peer2, true)
			// A listener on the wildcard address: replies leave from the route's source.
			any := netip.IPv4Unspecified()
			if f.client.Addr().Is6() {
				any = netip.IPv6Unspecified()
			}
			wf := f
			wf.listen = netip.AddrPortFrom(any, 3479)
			wf.relay = netip.AddrPortFrom(f.relay.Addr(), 50001)
			wc := e.bind(t, wf, 0x4002, f.peer, true)
			wlis := netip.AddrPortFrom(f.listen.Addr(), 3479)
			tests := []struct {
				name    string
				in      pkt
				ch      Channel
				action  uint32
				want    pkt // addresses and payload of what leaves
				counted Counters
			}{
				{"client to peer", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(160), 0)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(160)}, Counters{C2PPackets: 1, C2PBytes: 160}},
				{"client to peer, odd length, 3 bytes padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(5), 3)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(5)}, Counters{C2PPackets: 1, C2PBytes: 5}},
				{"client to peer, 2 bytes padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(6), 2)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(6)}, Counters{C2PPackets: 1, C2PBytes: 6}},
				{"client to peer, odd length, 1 byte padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(7), 1)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(7)}, Counters{C2PPackets: 1, C2PBytes: 7}},
				{"client to peer, empty", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, nil, 0)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: []byte{}}, Counters{C2PPackets: 1}},
				{"client to peer, full size", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(f.mtuPayload-4), 0)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(f.mtuPayload - 4)}, Counters{C2PPackets: 1, C2PBytes: uint64(f.mtuPayload - 4)}},
				{"peer to client", pkt{src: f.peer, dst: f.relay, payload: data(160)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: f.listen, dst: f.client, payload: channelData(0x4001, data(160), 0)}, Counters{P2CPackets: 1, P2CBytes: 160}},
				{"peer to client, odd length", pkt{src: f.peer, dst: f.relay, payload: data(1199)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: f.listen, dst: f.client, payload: channelData(0x4001, data(1199), 0)}, Counters{P2CPackets: 1, P2CBytes: 1199}},
				{"peer to client, largest that fits", pkt{src: f.peer, dst: f.relay, payload: data(f.mtuPayload - 4)}, c, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: f.listen, dst: f.client, payload: channelData(0x4001, data(f.mtuPayload-4), 0)}, Counters{P2CPackets: 1, P2CBytes: uint64(f.mtuPayload - 4)}},
				{"client to a wildcard listener", pkt{src: f.client, dst: wlis, payload: channelData(0x4002, data(99), 1)}, wc, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: wf.relay, dst: f.peer, payload: data(99)}, Counters{C2PPackets: 1, C2PBytes: 99}},
				{"peer to a client of a wildcard listener", pkt{src: f.peer, dst: wf.relay, payload: data(99)}, wc, xdpTX,
					pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: wlis, dst: f.client, payload: channelData(0x4002, data(99), 0)}, Counters{P2CPackets: 1, P2CBytes: 99}},
				{"client to peer on another interface", pkt{src: f.client, dst: f.listen, payload: channelData(0x4FFF, data(100), 0)}, c2, xdpRedirect,
					pkt{srcMAC: e.r2MAC, dstMAC: peer2MAC, src: f.relay, dst: f.peer2, payload: data(100)}, Counters{C2PPackets: 1, C2PBytes: 100}},
			}
			if f.client.Addr().Is4() {
				tests = append(tests, []struct {
					name    string
					in      pkt
					ch      Channel
					action  uint32
					want    pkt
					counted Counters
				}{
					{"client to peer, no UDP checksum", pkt{src: f.client, dst: f.listen, noCsum: true, payload: channelData(0x4001, data(33), 3)}, c, xdpTX,
						pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(33), noCsum: true}, Counters{C2PPackets: 1, C2PBytes: 33}},
					{"peer to client, no UDP checksum", pkt{src: f.peer, dst: f.relay, noCsum: true, payload: data(33)}, c, xdpTX,
						pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: f.listen, dst: f.client, payload: channelData(0x4001, data(33), 0), noCsum: true}, Counters{P2CPackets: 1, P2CBytes: 33}},
				}...)
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.in.srcMAC, tt.in.dstMAC = clientMAC, e.r0MAC
					before := e.counters(t, tt.ch.Slot)
					action, out := e.run(t, tt.in.bytes())
					if action != tt.action {
						t.Fatalf("action %d, want %d", action, tt.action)
					}
					e.checkRelayed(t, out, tt.want, tt.ch.Slot, before, tt.counted)
				})
			}
		})
	}
}

// TestDropsAndPasses checks what the program discards (each reason, counted) and what it
// leaves to the stack untouched (each reason, counted).
func TestDropsAndPasses(t *testing.T) {
	e := newEnv(t)
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			e.bind(t, f, 0x4001, f.peer, true)
			e.bind(t, f, 0x4002, netip.AddrPortFrom(f.peer2.Addr(), 40009), false) // no permission
			e.bind(t, fam{client: f.unrouted, listen: f.listen, relay: f.relay}, 0x4003, netip.AddrPortFrom(f.peer.Addr(), 40010), true)
			stun := make([]byte, 20)
			stun[1] = 1 // Binding request
			big := f.mtuPayload - 3
			none := reason{NumDrops, NumPasses}
			tests := []dropCase{
				{"channel without permission", pkt{src: f.client, dst: f.listen, payload: channelData(0x4002, data(10), 0)}, xdpDrop, reason{DropNoPermission, NumPasses}},
				{"peer without permission", pkt{src: netip.AddrPortFrom(f.peer2.Addr(), 40009), dst: f.relay, payload: data(10)}, xdpDrop, reason{DropNoPermission, NumPasses}},
				{"ChannelData longer than its datagram", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0)[:13]}, xdpDrop, reason{DropMalformed, NumPasses}},
				{"STUN from a client", pkt{src: f.client, dst: f.listen, payload: stun}, xdpPass, reason{NumDrops, PassNoEntry}},
				{"unbound channel", pkt{src: f.client, dst: f.listen, payload: channelData(0x4009, data(10), 0)}, xdpPass, reason{NumDrops, PassNoEntry}},
				{"peer without channel", pkt{src: netip.AddrPortFrom(f.peer.Addr(), 1), dst: f.relay, payload: data(10)}, xdpPass, reason{NumDrops, PassNoEntry}},
				{"more than 3 bytes of padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(8), 4)}, xdpPass, reason{NumDrops, PassPadding}},
				{"too large with the header", pkt{src: f.peer, dst: f.relay, payload: data(big)}, xdpPass, reason{NumDrops, PassMTU}},
				{"client without a neighbour entry", pkt{src: netip.AddrPortFrom(f.peer.Addr(), 40010), dst: f.relay, payload: data(10)}, xdpPass, reason{NumDrops, PassNoRoute}},
				{"bad UDP length", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0), lenDelta: 2}, xdpPass, none},
			}
			tests = append(tests, fragmentCases(f.client, f.listen, xdpPass)...)
			e.runDropCases(t, tests, clientMAC, e.r0MAC, xdpPass, true, e.run)
		})
	}
}

func TestChannelAcrossFamiliesRefused(t *testing.T) {
	o := newOffload(t)
	c := Channel{Num: 0x4001, Client: netip.MustParseAddrPort("10.0.0.2:1"), Listen: netip.MustParseAddrPort("10.0.0.1:3478"),
		Relay: netip.MustParseAddrPort("[fd00::1]:50000"), Peer: netip.MustParseAddrPort("[fd00::3]:2")}
	if err := o.PutChannel(c); !errors.Is(err, ErrFamily) {
		t.Fatalf("PutChannel across families: %v, want ErrFamily", err)
	}
}

// TestDeleteChannel: a deleted channel's packets go to the stack again.
func TestDeleteChannel(t *testing.T) {
	e := newEnv(t)
	f := fams[0]
	c := e.bind(t, f, 0x4001, f.peer, true)
	in := pkt{srcMAC: clientMAC, dstMAC: e.r0MAC, src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0)}.bytes()
	if a, _ := e.run(t, in); a != xdpTX {
		t.Fatalf("bound: action %d, want XDP_TX", a)
	}
	other := c
	other.Slot = c.Slot + 1
	if err := e.o.DeleteChannel(other); err != nil {
		t.Fatal(err)
	}
	if !e.o.HasChannel(c) {
		t.Fatal("deleting another slot's channel of the same keys removed this one")
	}
	if err := e.o.DeleteChannel(c); err != nil {
		t.Fatal(err)
	}
	if a, _ := e.run(t, in); a != xdpPass {
		t.Fatalf("deleted: action %d, want XDP_PASS", a)
	}
}

func TestSlots(t *testing.T) {
	o := newOffload(t)
	seen := map[uint32]bool{}
	for range 64 {
		s, err := o.NewSlot(0)
		if err != nil {
			t.Fatal(err)
		}
		if seen[s] {
			t.Fatalf("slot %d handed out twice", s)
		}
		seen[s] = true
	}
	if _, err := o.NewSlot(0); !errors.Is(err, ErrSlots) {
		t.Fatalf("65th slot of 64: %v, want ErrSlots", err)
	}
	o.FreeSlot(7)
	if s, err := o.NewSlot(0); err != nil || s != 7 {
		t.Fatalf("after freeing 7: %d, %v", s, err)
	}
}

// TestGatewayMode: without the routing table, a relayed packet goes back to the link address
// it came from, and the configured MTU bounds it.
func TestGatewayMode(t *testing.T) {
	e := newEnvWith(t, Config{Slots: 4, Gateway: true, MTU: 1400})
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			e.bind(t, f, 0x4001, f.peer, true)
			gw := net.HardwareAddr{2, 0, 0, 0, 0, 0xfe}
			in := pkt{srcMAC: gw, dstMAC: e.r0MAC, src: f.client, dst: f.listen, payload: channelData(0x4001, data(100), 0)}
			action, out := e.run(t, in.bytes())
			if action != xdpTX {
				t.Fatalf("action %d, want XDP_TX", action)
			}
			got, err := parse(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.dstMAC, gw) || !bytes.Equal(got.srcMAC, e.r0MAC) || got.dst != f.peer || !bytes.Equal(got.payload, data(100)) {
				t.Errorf("got %v → %v (%v → %v), want %v → %v (%v → %v)", got.srcMAC, got.dstMAC, got.src, got.dst, e.r0MAC, gw, f.relay, f.peer)
			}
			_, p0 := e.reasons(t)
			big := pkt{srcMAC: gw, dstMAC: e.r0MAC, src: f.peer, dst: f.relay, payload: data(1400 - 8 - len(in.bytes()) + len(in.payload) + 8 + 14)}
			if action, _ := e.run(t, big.bytes()); action != xdpPass {
				t.Fatalf("over the MTU: action %d, want XDP_PASS", action)
			}
			if _, p1 := e.reasons(t); p1[PassMTU]-p0[PassMTU] != 1 {
				t.Errorf("over the MTU not counted")
			}
		})
	}
}

// TestQuota: an allocation's bandwidth cap holds in the kernel, both directions together,
// and what it refuses is dropped and counted.
func TestQuota(t *testing.T) {
	e := newEnv(t)
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			// 620 B/s, bursts of 620 B: after 600 B, the next 600 B pass only after 0.94 s of
			// refill, far more than the few milliseconds between these runs.
			s, err := e.o.NewSlot(620)
			if err != nil {
				t.Fatal(err)
			}
			defer e.o.FreeSlot(s)
			c := Channel{Slot: s, Num: 0x4001, Client: f.client, Listen: f.listen, Relay: f.relay, Peer: f.peer}
			if err := errors.Join(e.o.PutChannel(c), e.o.Permit(s, f.peer.Addr())); err != nil {
				t.Fatal(err)
			}
			defer func() { e.o.DeleteChannel(c); e.o.Revoke(s, f.peer.Addr()) }()
			up := pkt{srcMAC: clientMAC, dstMAC: e.r0MAC, src: f.client, dst: f.listen, payload: channelData(0x4001, data(600), 0)}
			down := pkt{srcMAC: peerMAC, dstMAC: e.r0MAC, src: f.peer, dst: f.relay, payload: data(600)}
			d0, _ := e.reasons(t)
			if a, _ := e.run(t, up.bytes()); a != xdpTX {
				t.Fatalf("first 600 B of a 620 B burst: action %d, want XDP_TX", a)
			}
			if a, _ := e.run(t, down.bytes()); a != xdpDrop {
				t.Fatalf("600 B more, the other way: action %d, want XDP_DROP", a)
			}
			if a, _ := e.run(t, up.bytes()); a != xdpDrop {
				t.Fatalf("600 B more: action %d, want XDP_DROP", a)
			}
			d1, _ := e.reasons(t)
			if d1[DropQuota]-d0[DropQuota] != 2 {
				t.Errorf("quota drops += %d, want 2", d1[DropQuota]-d0[DropQuota])
			}
			if got := e.counters(t, s); got.C2PPackets != 1 || got.P2CPackets != 0 {
				t.Errorf("counted %+v, want the one packet that passed", got)
			}
		})
	}
}

// partial rewrites frame b's UDP checksum the way a sender leaves it for the NIC
// (CHECKSUM_PARTIAL): the pseudo-header's sum, folded, not complemented.
func partial(t *testing.T, b []byte) []byte {
	t.Helper()
	p, err := parse(b)
	if err != nil {
		t.Fatal(err)
	}
	var ph []byte
	l3 := 20
	if p.src.Addr().Is4() {
		s, d := p.src.Addr().As4(), p.dst.Addr().As4()
		ph = append(append(ph, s[:]...), d[:]...)
	} else {
		l3 = 40
		s, d := p.src.Addr().As16(), p.dst.Addr().As16()
		ph = append(append(ph, s[:]...), d[:]...)
	}
	ph = append(ph, 0, 17, byte((8+len(p.payload))>>8), byte(8+len(p.payload)))
	c := fold(sum16(ph, 0))
	out := append([]byte{}, b...)
	out[14+l3+6], out[14+l3+7] = byte(c>>8), byte(c)
	return out
}

// TestFullChecksum: with FullChecksum, datagrams whose checksum the sender left to a NIC
// (as over a veth) leave with a complete, correct one.
func TestFullChecksum(t *testing.T) {
	e := newEnvWith(t, Config{Slots: 8, FullChecksum: true})
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			e.bind(t, f, 0x4001, f.peer, true)
			for _, tt := range []struct {
				name string
				in   pkt
				want pkt
			}{
				{"client to peer, padded", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(77), 3)},
					pkt{src: f.relay, dst: f.peer, payload: data(77)}},
				{"client to peer, full size", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(f.mtuPayload-4), 0)},
					pkt{src: f.relay, dst: f.peer, payload: data(f.mtuPayload - 4)}},
				{"client to peer, 1 byte", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(1), 3)},
					pkt{src: f.relay, dst: f.peer, payload: data(1)}},
				{"peer to client", pkt{src: f.peer, dst: f.relay, payload: data(1199)},
					pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, data(1199), 0)}},
				{"peer to client, 64 bytes", pkt{src: f.peer, dst: f.relay, payload: data(64)},
					pkt{src: f.listen, dst: f.client, payload: channelData(0x4001, data(64), 0)}},
			} {
				t.Run(tt.name, func(t *testing.T) {
					tt.in.srcMAC, tt.in.dstMAC = clientMAC, e.r0MAC
					in := partial(t, tt.in.bytes())
					if _, err := parse(in); err == nil {
						t.Fatal("crafted partial checksum verifies as complete")
					}
					action, out := e.run(t, in)
					if action != xdpTX {
						t.Fatalf("action %d, want XDP_TX", action)
					}
					got, err := parse(out)
					if err != nil {
						t.Fatalf("output: %v", err)
					}
					if got.src != tt.want.src || got.dst != tt.want.dst || !bytes.Equal(got.payload, tt.want.payload) {
						t.Errorf("got %v → %v, %d bytes; want %v → %v, %d", got.src, got.dst, len(got.payload), tt.want.src, tt.want.dst, len(tt.want.payload))
					}
				})
			}
		})
	}
}

// checkRelayed checks what a program sent on, out, against want (MACs where want has them,
// addresses, TTL, whether it has a UDP checksum, payload), and that slot's counters moved by
// counted since before.
func (e *env) checkRelayed(t *testing.T, out []byte, want pkt, slot uint32, before, counted Counters) {
	t.Helper()
	got, err := parse(out)
	if err != nil {
		t.Fatalf("output: %v\n% x", err, out[:min(len(out), 80)])
	}
	if want.srcMAC != nil && (!bytes.Equal(got.srcMAC, want.srcMAC) || !bytes.Equal(got.dstMAC, want.dstMAC)) {
		t.Errorf("MACs %v → %v, want %v → %v", got.srcMAC, got.dstMAC, want.srcMAC, want.dstMAC)
	}
	if got.src != want.src || got.dst != want.dst {
		t.Errorf("%v → %v, want %v → %v", got.src, got.dst, want.src, want.dst)
	}
	if got.ttl != 64 {
		t.Errorf("TTL %d, want 64", got.ttl)
	}
	if got.noCsum != want.noCsum {
		t.Errorf("UDP checksum absent %v, want %v", got.noCsum, want.noCsum)
	}
	if !bytes.Equal(got.payload, want.payload) {
		t.Errorf("payload (%d bytes) differs from the %d bytes expected", len(got.payload), len(want.payload))
	}
	after := e.counters(t, slot)
	d := Counters{after.C2PPackets - before.C2PPackets, after.C2PBytes - before.C2PBytes,
		after.P2CPackets - before.P2CPackets, after.P2CBytes - before.P2CBytes}
	if d != counted {
		t.Errorf("counted %+v, want %+v", d, counted)
	}
}

// dropCase is a frame a program must drop or leave alone: the action it must return and the
// one drop or pass reason it must count.
type dropCase struct {
	name   string
	in     pkt
	action uint32
	why    reason
}

// fragmentCases are the frames from client to listen that every program leaves to the stack
// (its action pass): a first fragment and one with IP options (IPv4), one with a fragment
// header (IPv6).
func fragmentCases(client, listen netip.AddrPort, pass uint32) []dropCase {
	if client.Addr().Is4() {
		return []dropCase{
			{"first fragment", pkt{src: client, dst: listen, fragOff: 0x2000, payload: channelData(0x4001, data(10), 0)}, pass, reason{NumDrops, PassFragment}},
			{"IP options", pkt{src: client, dst: listen, ipOptions: true, payload: channelData(0x4001, data(10), 0)}, pass, reason{NumDrops, PassIPOptions}},
		}
	}
	return []dropCase{{"fragment header", pkt{src: client, dst: listen, fragHdr: true, payload: channelData(0x4001, data(10), 0)}, pass, reason{NumDrops, PassFragment}}}
}

// runDropCases runs each case's frame (with MACs srcMAC → dstMAC) through run and checks the
// action, that a frame it passed (action pass) left as it came (exactly, or, unless exact,
// as the first bytes of what came out) and the reason counted.
func (e *env) runDropCases(t *testing.T, tests []dropCase, srcMAC, dstMAC net.HardwareAddr, pass uint32, exact bool,
	run func(*testing.T, []byte) (uint32, []byte)) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.srcMAC, tt.in.dstMAC = srcMAC, dstMAC
			in := tt.in.bytes()
			d0, p0 := e.reasons(t)
			action, out := run(t, in)
			d1, p1 := e.reasons(t)
			if action != tt.action {
				t.Fatalf("action %d, want %d", action, tt.action)
			}
			if action == pass && (len(out) < len(in) || exact && len(out) != len(in) || !bytes.Equal(out[:len(in)], in)) {
				t.Errorf("passed packet changed:\n% x\nwant\n% x", out, in)
			}
			checkReasons(t, tt.why, d0, d1, p0, p1)
		})
	}
}
