//go:build linux

package kfast

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/relay/internal/kfast/nstest"
)

// The tc variant on an interface other than lo (avedge_fwd_tc), on crafted packets with
// BPF_PROG_RUN: what it relays is sent on by redirect, so its output carries the next hop's
// MAC addresses, as the XDP program's does.

const tcRedirect = 7 // TC_ACT_REDIRECT

// skbMD is the start of struct __sk_buff, the context BPF_PROG_RUN takes for a tc program: the
// interface the packet arrives on is ifindex.
type skbMD struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority, IngressIfindex, Ifindex uint32
}

// runFwd runs the forwarding tc program once on frame in as if it arrived on r0, in the
// namespace.
func (e *env) runFwd(t *testing.T, in []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(in)+256)
	var ret uint32
	var err error
	e.ns.Do(func() {
		opts := ebpf.RunOptions{Data: in, DataOut: out, Context: skbMD{Ifindex: uint32(e.r0)}}
		ret, err = e.o.objs.AvedgeFwdTc.Run(&opts)
		out = opts.DataOut
	})
	if err != nil {
		t.Fatalf("BPF_PROG_RUN: %v", err)
	}
	return ret, out
}

// TestFwdRelay runs each relayed path of the forwarding tc variant on crafted packets and checks
// the result from scratch: MACs, addresses, hop limit, lengths and checksums, the payload byte
// for byte, and the counters.
func TestFwdRelay(t *testing.T) {
	e := newEnv(t)
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			c := e.bind(t, f, 0x4001, f.peer, true)
			c2 := e.bind(t, f, 0x4FFF, f.peer2, true)
			any := netip.IPv4Unspecified()
			if f.client.Addr().Is6() {
				any = netip.IPv6Unspecified()
			}
			wf := f
			wf.listen = netip.AddrPortFrom(any, 3479)
			wf.relay = netip.AddrPortFrom(f.relay.Addr(), 50001)
			wc := e.bind(t, wf, 0x4002, f.peer, true)
			wlis := netip.AddrPortFrom(f.listen.Addr(), 3479)
			type tcase struct {
				name    string
				in      pkt
				ch      Channel
				want    pkt
				counted Counters
			}
			up := func(name string, data []byte, pad int) tcase {
				return tcase{name, pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data, pad)}, c,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data}, Counters{C2PPackets: 1, C2PBytes: uint64(len(data))}}
			}
			down := func(name string, data []byte) tcase {
				return tcase{name, pkt{src: f.peer, dst: f.relay, payload: data}, c,
					pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: f.listen, dst: f.client, payload: channelData(0x4001, data, 0)}, Counters{P2CPackets: 1, P2CBytes: uint64(len(data))}}
			}
			tests := []tcase{
				up("client to peer", data(160), 0),
				up("client to peer, odd length, 3 bytes padding", data(5), 3),
				up("client to peer, 2 bytes padding", data(6), 2),
				up("client to peer, odd length, 1 byte padding", data(7), 1),
				up("client to peer, empty", []byte{}, 0),
				up("client to peer, 127 bytes (every piece size)", data(127), 1),
				up("client to peer, full size", data(f.mtuPayload-4), 0),
				down("peer to client", data(160)),
				down("peer to client, odd length", data(1199)),
				down("peer to client, 127 bytes", data(127)),
				down("peer to client, empty", nil),
				down("peer to client, largest that fits", data(f.mtuPayload-4)),
				{"client to a wildcard listener", pkt{src: f.client, dst: wlis, payload: channelData(0x4002, data(99), 1)}, wc,
					pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: wf.relay, dst: f.peer, payload: data(99)}, Counters{C2PPackets: 1, C2PBytes: 99}},
				{"peer to a client of a wildcard listener", pkt{src: f.peer, dst: wf.relay, payload: data(99)}, wc,
					pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: wlis, dst: f.client, payload: channelData(0x4002, data(99), 0)}, Counters{P2CPackets: 1, P2CBytes: 99}},
				{"client to peer on another interface", pkt{src: f.client, dst: f.listen, payload: channelData(0x4FFF, data(100), 0)}, c2,
					pkt{srcMAC: e.r2MAC, dstMAC: peer2MAC, src: f.relay, dst: f.peer2, payload: data(100)}, Counters{C2PPackets: 1, C2PBytes: 100}},
			}
			if f.client.Addr().Is4() {
				tests = append(tests,
					tcase{"client to peer, no UDP checksum", pkt{src: f.client, dst: f.listen, noCsum: true, payload: channelData(0x4001, data(33), 3)}, c,
						pkt{srcMAC: e.r0MAC, dstMAC: peerMAC, src: f.relay, dst: f.peer, payload: data(33), noCsum: true}, Counters{C2PPackets: 1, C2PBytes: 33}},
					tcase{"peer to client, no UDP checksum", pkt{src: f.peer, dst: f.relay, noCsum: true, payload: data(33)}, c,
						pkt{srcMAC: e.r0MAC, dstMAC: clientMAC, src: f.listen, dst: f.client, payload: channelData(0x4001, data(33), 0), noCsum: true}, Counters{P2CPackets: 1, P2CBytes: 33}})
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.in.srcMAC, tt.in.dstMAC = clientMAC, e.r0MAC
					before := e.counters(t, tt.ch.Slot)
					action, out := e.runFwd(t, tt.in.bytes())
					if action != tcRedirect {
						t.Fatalf("action %d, want TC_ACT_REDIRECT", action)
					}
					e.checkRelayed(t, out, tt.want, tt.ch.Slot, before, tt.counted)
				})
			}
		})
	}
}

// TestFwdDropsAndPasses: what the forwarding tc variant discards (each reason, counted) and
// what it leaves to the next program and the stack untouched (each reason, counted).
func TestFwdDropsAndPasses(t *testing.T) {
	e := newEnv(t)
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			e.bind(t, f, 0x4001, f.peer, true)
			e.bind(t, f, 0x4002, netip.AddrPortFrom(f.peer2.Addr(), 40009), false) // no permission
			e.bind(t, fam{client: f.unrouted, listen: f.listen, relay: f.relay}, 0x4003, netip.AddrPortFrom(f.peer.Addr(), 40010), true)
			stun := make([]byte, 20)
			stun[1] = 1
			none := reason{NumDrops, NumPasses}
			tests := []dropCase{
				{"channel without permission", pkt{src: f.client, dst: f.listen, payload: channelData(0x4002, data(10), 0)}, tcShot, reason{DropNoPermission, NumPasses}},
				{"peer without permission", pkt{src: netip.AddrPortFrom(f.peer2.Addr(), 40009), dst: f.relay, payload: data(10)}, tcShot, reason{DropNoPermission, NumPasses}},
				{"ChannelData longer than its datagram", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0)[:13]}, tcShot, reason{DropMalformed, NumPasses}},
				{"STUN from a client", pkt{src: f.client, dst: f.listen, payload: stun}, tcNext, reason{NumDrops, PassNoEntry}},
				{"unbound channel", pkt{src: f.client, dst: f.listen, payload: channelData(0x4009, data(10), 0)}, tcNext, reason{NumDrops, PassNoEntry}},
				{"more than 3 bytes of padding", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(8), 4)}, tcNext, reason{NumDrops, PassPadding}},
				{"too large with the header", pkt{src: f.peer, dst: f.relay, payload: data(f.mtuPayload - 3)}, tcNext, reason{NumDrops, PassMTU}},
				{"client without a neighbour entry", pkt{src: netip.AddrPortFrom(f.peer.Addr(), 40010), dst: f.relay, payload: data(10)}, tcNext, reason{NumDrops, PassNoRoute}},
				{"bad UDP length", pkt{src: f.client, dst: f.listen, payload: channelData(0x4001, data(10), 0), lenDelta: 2}, tcNext, none},
			}
			tests = append(tests, fragmentCases(f.client, f.listen, tcNext)...)
			e.runDropCases(t, tests, clientMAC, e.r0MAC, tcNext, false, e.runFwd)
		})
	}
}

// TestAttachVethTC attaches the tc variant to the relay's end of a veth pair between two
// namespaces the test makes, with no program on the far end, installs a channel by hand (no
// relay process: whatever arrives was relayed in the kernel) and sends real datagrams through
// it both ways, 0 to 1399 bytes, byte for byte, from sockets in the other namespace:
//
//   - partial in, computed out: the senders leave their checksums to the veth
//     (CHECKSUM_PARTIAL), and the relay's end has no transmit checksum offload, so the stack
//     completes each relayed checksum from csum_start as a NIC would, and the receiving
//     sockets verify it;
//   - complete in: the senders compute their checksums, which the program updates.
func TestAttachVethTC(t *testing.T) {
	for _, tc := range []struct {
		name                string
		senderOff, relayOff bool
	}{
		{"partial in, computed out", false, true},
		{"complete in", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOffload(t)
			r, c := vethPairCsum(t, tc.senderOff, tc.relayOff)
			var mode Mode
			var err error
			r.Do(func() { mode, err = o.Attach(r.Ifindex("v0"), ModeTCX) })
			if err != nil {
				t.Fatal(err)
			}
			if mode != ModeTCX {
				t.Fatalf("mode %v, want tcx", mode)
			}
			for _, ns := range []*nstest.NS{r, c} {
				if out := ns.IP("link show"); strings.Contains(out, "xdp") {
					t.Fatalf("an XDP program is attached in %s:\n%s", ns.Name, out)
				}
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
					if err := errors.Join(o.PutChannel(ch), o.Permit(ch.Slot, ch.Peer.Addr())); err != nil {
						t.Fatal(err)
					}
					const n = 100
					sent := roundTrips(t, c, ch, n, 1400)
					got, err := o.Counters(ch.Slot)
					if err != nil {
						t.Fatal(err)
					}
					if want := (Counters{n, sent, n, sent}); got != want {
						t.Errorf("counters %+v, want %+v", got, want)
					}
				})
			}
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			var q *link.QueryResult
			r.Do(func() {
				q, err = link.QueryPrograms(link.QueryOptions{Target: r.Ifindex("v0"), Attach: ebpf.AttachTCXIngress})
			})
			if err != nil || len(q.Programs) != 0 {
				t.Errorf("after Close, v0's tcx ingress holds %v (%v), want nothing", q, err)
			}
		})
	}
}

// BenchmarkVethWindow: like BenchmarkVethRoundTrip, but with 32 messages in flight, as the
// bench's saturating load keeps them: an op is one relayed round trip; the peer echoes from a
// goroutine of its own.
func BenchmarkVethWindow(b *testing.B) {
	for _, m := range []Mode{ModeNative, ModeGeneric, ModeTCX} {
		b.Run(m.String(), func(b *testing.B) {
			ch, client, peer := vethBench(b, m)
			testnet.EchoOn(b, peer)
			msg := channelData(ch.Num, data(1200), 0)
			buf := make([]byte, 2048)
			client.SetReadDeadline(time.Now().Add(30 * time.Second))
			b.SetBytes(2 * 1200)
			const window = 32
			for range window {
				if _, err := client.WriteToUDPAddrPort(msg, ch.Listen); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				if _, _, err := client.ReadFromUDPAddrPort(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := client.WriteToUDPAddrPort(msg, ch.Listen); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
