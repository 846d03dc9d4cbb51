//go:build linux

package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// The peer policy end to end: every CreatePermission and ChannelBind a client sends through a
// real relay is answered as relay/policy decides. No packet is ever sent to a peer in these
// tests; only permissions are asked for, so public addresses such as 8.8.8.8 are safe to name.
//
// RFC 8656 §10.2: "The server MAY impose restrictions on the IP address allowed in the
// XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects the request with
// a 403 (Forbidden) error."
//
// RFC 6156 §6.2: a peer address of the other family than the allocation's gets 443 (Peer
// Address Family Mismatch); pion checks that before the policy is asked, so an IPv4-mapped
// address on an IPv6 allocation (which pion reads as IPv4) gets 443 and never reaches us.

// xorPeerAs writes XOR-PEER-ADDRESS with an explicit address family, so that an IPv4-mapped
// IPv6 address (::ffff:10.0.0.1) really goes on the wire as family 0x02 with 16 bytes;
// pion/stun's own encoder would turn it into the IPv4 form.
//
// RFC 8489 §14.2: "If the IP address family is IPv6, X-Address is computed by XOR'ing the
// mapped IP address with the concatenation of the magic cookie and the 96-bit transaction
// ID."
// magicCookie is the fixed STUN magic cookie (RFC 8489 §5).
const magicCookie = 0x2112A442

type xorPeerAs struct {
	ip   netip.Addr
	port uint16
	six  bool
}

func (p xorPeerAs) AddTo(m *stun.Message) error {
	var key [16]byte
	binary.BigEndian.PutUint32(key[:4], magicCookie)
	copy(key[4:], m.TransactionID[:])
	v := make([]byte, 4, 20)
	binary.BigEndian.PutUint16(v[2:], p.port^uint16(magicCookie>>16))
	var addr []byte
	if p.six {
		v[1] = 0x02
		a := p.ip.As16()
		addr = a[:]
	} else {
		v[1] = 0x01
		a := p.ip.Unmap().As4()
		addr = a[:]
	}
	for i, b := range addr {
		v = append(v, b^key[i])
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

// permitter asks a relay for a permission to one peer address.
type permitter interface {
	permit(peer netip.Addr, six bool) error
}

type rawPermitter struct{ c *rawClient }

func (r rawPermitter) permit(peer netip.Addr, six bool) error {
	_, err := r.c.authed(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), xorPeerAs{ip: peer, port: 9, six: six})
	return err
}

// pionPermitter uses pion's own client (over TCP here); pion encodes the address itself.
type pionPermitter struct{ c *turn.Client }

func (p pionPermitter) permit(peer netip.Addr, _ bool) error {
	return p.c.CreatePermission(&net.UDPAddr{IP: peer.AsSlice(), Port: 9})
}

// dualStackServer listens on UDP and TCP on 127.0.0.1 and, when ::1 exists, on [::1], with a
// relay address in each family.
func dualStackServer(t *testing.T, v6 bool, mod func(c *Config)) *Server {
	t.Helper()
	return startServer(t, func(c *Config) {
		lo4 := netip.MustParseAddrPort("127.0.0.1:0")
		c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo4}, {Network: TCP, Addr: lo4}}
		c.RelayIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		if v6 {
			lo6 := netip.MustParseAddrPort("[::1]:0")
			c.Listeners = append(c.Listeners, ListenerConfig{Network: UDP, Addr: lo6}, ListenerConfig{Network: TCP, Addr: lo6})
			c.RelayIPs = append(c.RelayIPs, netip.MustParseAddr("::1"))
			// Two relay addresses of 10 000 ports each would need more descriptors than a
			// 20 000 RLIMIT_NOFILE allows; these tests hold a handful of allocations.
			c.MaxAllocations = 1000
		}
		c.Peers = PeerPolicy{}
		if mod != nil {
			mod(c)
		}
	})
}

// listenAddr returns the bound address of s's listener of network n in family six.
func listenAddr(s *Server, n Network, six bool) string {
	for _, l := range s.Addrs() {
		if l.Network == n && l.Addr.Addr().Is6() == six {
			return l.Addr.String()
		}
	}
	return ""
}

func haveIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// allocationFor makes an allocation of family six over transport tr and returns what asks
// its permissions.
func allocationFor(t *testing.T, s *Server, tr Network, six bool, user string) permitter {
	t.Helper()
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	server := listenAddr(s, tr, six)
	if tr == UDP {
		c := dialRaw(t, server, username, password)
		if err := c.allocate(); err != nil {
			t.Fatalf("allocate over %s (ipv6 %v): %v", tr, six, err)
		}
		return rawPermitter{c}
	}
	c := newStreamClient(t, server, nil, username, password)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over %s (ipv6 %v): %v", tr, six, err)
	}
	t.Cleanup(func() { relay.Close() })
	return pionPermitter{c}
}

type peerCase struct {
	name string
	peer string
	// mappedOn4 sends an IPv4-mapped address as an IPv6-family attribute on an IPv4
	// allocation (pion reads it as IPv4, so the policy judges it).
	mappedOn4 bool
	want      stun.ErrorCode // 0: allowed
}

// defaultPolicyCases are judged by the default policy (no loopback, no lists).
var defaultPolicyCases = []peerCase{
	{name: "rfc1918 10/8", peer: "10.0.0.1", want: stun.CodeForbidden},
	{name: "rfc1918 192.168/16", peer: "192.168.1.1", want: stun.CodeForbidden},
	{name: "rfc1918 172.16/12", peer: "172.16.0.1", want: stun.CodeForbidden},
	{name: "rfc1918 172.31 edge", peer: "172.31.255.254", want: stun.CodeForbidden},
	{name: "172.32 is public", peer: "172.32.0.1"},
	{name: "cgnat", peer: "100.64.0.1", want: stun.CodeForbidden},
	{name: "cloud metadata", peer: "169.254.169.254", want: stun.CodeForbidden},
	{name: "unspecified v4", peer: "0.0.0.0", want: stun.CodeForbidden},
	{name: "this network 0/8", peer: "0.1.2.3", want: stun.CodeForbidden},
	{name: "multicast v4", peer: "224.0.0.1", want: stun.CodeForbidden},
	{name: "broadcast", peer: "255.255.255.255", want: stun.CodeForbidden},
	{name: "reserved 240/4", peer: "240.0.0.1", want: stun.CodeForbidden},
	{name: "documentation TEST-NET-1", peer: "192.0.2.1", want: stun.CodeForbidden},
	{name: "documentation TEST-NET-2", peer: "198.51.100.1", want: stun.CodeForbidden},
	{name: "documentation TEST-NET-3", peer: "203.0.113.5", want: stun.CodeForbidden},
	{name: "benchmarking", peer: "198.18.0.1", want: stun.CodeForbidden},
	{name: "loopback v4", peer: "127.0.0.1", want: stun.CodeForbidden},
	{name: "loopback 127/8", peer: "127.0.0.2", want: stun.CodeForbidden},
	{name: "public v4", peer: "8.8.8.8"},
	{name: "public v4 other", peer: "1.1.1.1"},
	{name: "v4-mapped private on v4 allocation", peer: "::ffff:10.0.0.1", mappedOn4: true, want: stun.CodeForbidden},
	{name: "v4-mapped metadata on v4 allocation", peer: "::ffff:169.254.169.254", mappedOn4: true, want: stun.CodeForbidden},
	{name: "v4-mapped public on v4 allocation", peer: "::ffff:8.8.8.8", mappedOn4: true},
	{name: "v4-mapped private on v6 allocation", peer: "::ffff:10.0.0.1", want: stun.CodePeerAddrFamilyMismatch},
	{name: "nat64 private", peer: "64:ff9b::a00:1", want: stun.CodeForbidden},
	{name: "nat64 loopback", peer: "64:ff9b::7f00:1", want: stun.CodeForbidden},
	{name: "nat64 public", peer: "64:ff9b::808:808"},
	{name: "nat64 local-use", peer: "64:ff9b:1::808:808", want: stun.CodeForbidden},
	{name: "6to4 private", peer: "2002:a00:1::", want: stun.CodeForbidden},
	{name: "6to4 metadata", peer: "2002:a9fe:a9fe::1", want: stun.CodeForbidden},
	{name: "teredo private client", peer: "2001:0:808:808::f5ff:fffe", want: stun.CodeForbidden},
	{name: "v4-compatible", peer: "::a00:1", want: stun.CodeForbidden},
	{name: "link-local v6", peer: "fe80::1", want: stun.CodeForbidden},
	{name: "unique-local fc00", peer: "fc00::1", want: stun.CodeForbidden},
	{name: "unique-local fd", peer: "fd12:3456::1", want: stun.CodeForbidden},
	{name: "loopback v6", peer: "::1", want: stun.CodeForbidden},
	{name: "unspecified v6", peer: "::", want: stun.CodeForbidden},
	{name: "multicast v6", peer: "ff02::1", want: stun.CodeForbidden},
	{name: "documentation v6", peer: "2001:db8::1", want: stun.CodeForbidden},
	{name: "site-local v6", peer: "fec0::1", want: stun.CodeForbidden},
	{name: "outside 2000::/3", peer: "4000::1", want: stun.CodeForbidden},
	{name: "public v6", peer: "2001:4860:4860::8888"},
}

// runPeerCases asks each case's permission of s over every transport and family available,
// and checks the answer and the policy drop counter: one or more per 403 (a retransmitted
// request is judged again), none for an allowed peer or a 443.
func runPeerCases(t *testing.T, s *Server, v6 bool, cases []peerCase) {
	t.Helper()
	transports := []Network{UDP, TCP}
	for _, tr := range transports {
		t.Run(string(tr), func(t *testing.T) {
			alloc := map[bool]permitter{false: allocationFor(t, s, tr, false, "policy-"+string(tr)+"4")}
			if v6 {
				alloc[true] = allocationFor(t, s, tr, true, "policy-"+string(tr)+"6")
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					peer := netip.MustParseAddr(tc.peer)
					six := peer.Is6() && !tc.mappedOn4
					p, ok := alloc[six]
					if !ok {
						t.Skip("::1 is not configured: no IPv6 allocation")
					}
					before := s.Stats().Drops[metrics.DropPolicy]
					err := p.permit(peer, peer.Is6())
					after := s.Stats().Drops[metrics.DropPolicy]
					if got := errorCode(err); got != tc.want || (tc.want == 0 && err != nil) {
						t.Fatalf("CreatePermission %s: %v (code %d), want code %d", tc.peer, err, got, tc.want)
					}
					switch {
					case tc.want == stun.CodeForbidden && after == before:
						t.Errorf("403 for %s not counted as a policy drop", tc.peer)
					case tc.want != stun.CodeForbidden && after != before:
						t.Errorf("policy drops grew by %d for %s, answered %d", after-before, tc.peer, tc.want)
					}
				})
			}
		})
	}
}

func TestPeerPolicyDefault(t *testing.T) {
	v6 := haveIPv6Loopback()
	s := dualStackServer(t, v6, nil)
	if !v6 {
		t.Log("::1 is not configured: IPv6 forms are skipped")
	}
	if n := len(defaultPolicyCases); n < 25 {
		t.Fatalf("only %d address forms", n)
	}
	runPeerCases(t, s, v6, defaultPolicyCases)
	if s.Stats().Permissions == 0 {
		t.Error("no permission was granted to any allowed peer")
	}
}

// Allow lifts the built-in deny ranges for what it contains; Deny refuses whatever Allow
// says, including every IPv6 form that embeds a denied IPv4 address.
func TestPeerPolicyOverrides(t *testing.T) {
	v6 := haveIPv6Loopback()
	for _, tc := range []struct {
		name   string
		policy PeerPolicy
		cases  []peerCase
	}{
		{
			name:   "allow loopback",
			policy: PeerPolicy{AllowLoopback: true},
			cases: []peerCase{
				{name: "loopback v4", peer: "127.0.0.1"},
				{name: "loopback 127/8", peer: "127.1.2.3"},
				{name: "loopback v6", peer: "::1"},
				{name: "nat64 loopback", peer: "64:ff9b::7f00:1"},
				{name: "private still refused", peer: "10.0.0.1", want: stun.CodeForbidden},
				{name: "link-local still refused", peer: "fe80::1", want: stun.CodeForbidden},
			},
		},
		{
			name: "allow and deny lists",
			policy: PeerPolicy{
				Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:1::/32"), netip.MustParsePrefix("8.8.0.0/16")},
				Deny:  []netip.Prefix{netip.MustParsePrefix("8.8.8.0/24"), netip.MustParsePrefix("2001:4860::/32")},
			},
			cases: []peerCase{
				{name: "allowed private", peer: "10.1.2.3"},
				{name: "allowed private, mapped", peer: "::ffff:10.1.2.3", mappedOn4: true},
				{name: "allowed private via nat64", peer: "64:ff9b::a01:203"},
				{name: "private outside allow", peer: "10.2.0.1", want: stun.CodeForbidden},
				{name: "allowed unique-local", peer: "fd00:1::5"},
				{name: "unique-local outside allow", peer: "fd00:2::5", want: stun.CodeForbidden},
				{name: "denied public", peer: "8.8.8.8", want: stun.CodeForbidden},
				{name: "deny beats allow", peer: "8.8.8.9", want: stun.CodeForbidden},
				{name: "allowed next to deny", peer: "8.8.4.4"},
				{name: "denied via v4-mapped", peer: "::ffff:8.8.8.8", mappedOn4: true, want: stun.CodeForbidden},
				{name: "denied via nat64", peer: "64:ff9b::808:808", want: stun.CodeForbidden},
				{name: "denied via 6to4", peer: "2002:808:808::1", want: stun.CodeForbidden},
				{name: "denied v6", peer: "2001:4860:4860::8888", want: stun.CodeForbidden},
				{name: "public elsewhere", peer: "9.9.9.9"},
			},
		},
		{
			// The host's own addresses (routes of type local: all of 127.0.0.0/8 here) stay
			// refused when an allow entry lifts their built-in range, except the relayed
			// address (127.0.0.1, whose ports are checked per packet) and an address the
			// allow list names by itself.
			name: "allow lifts a range, not the host's own addresses",
			policy: PeerPolicy{
				Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("127.0.0.9/32")},
			},
			cases: []peerCase{
				{name: "own relayed address", peer: "127.0.0.1"},
				{name: "local address", peer: "127.0.0.5", want: stun.CodeForbidden},
				{name: "local address, mapped", peer: "::ffff:127.0.0.5", mappedOn4: true, want: stun.CodeForbidden},
				{name: "local address via nat64", peer: "64:ff9b::7f00:5", want: stun.CodeForbidden},
				{name: "local address named by itself", peer: "127.0.0.9"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dualStackServer(t, v6, func(c *Config) { c.Peers = tc.policy })
			runPeerCases(t, s, v6, tc.cases)
		})
	}
}

// RFC 8656 §12.2 applies the same restriction to ChannelBind: "the server MAY impose
// restrictions ... if a value is not allowed, the server rejects the request with a 403".
// SetPeerPolicy swaps the policy for new requests on live allocations.
func TestPeerPolicyChannelBindAndRuntimeSwap(t *testing.T) {
	s := dualStackServer(t, false, nil)
	c := newRawAllocation(t, s, "alice")
	p := rawPermitter{c}
	priv := netip.MustParseAddr("10.1.2.3")
	public := netip.MustParseAddr("8.8.8.8")
	policyDrops := func() uint64 { return s.Stats().Drops[metrics.DropPolicy] }

	type step struct {
		name string
		do   func() error
		want stun.ErrorCode
	}
	check := func(steps []step) {
		t.Helper()
		for _, st := range steps {
			before := policyDrops()
			err := st.do()
			got := errorCode(err)
			if got != st.want || (st.want == 0 && err != nil) {
				t.Fatalf("%s: %v, want code %d", st.name, err, st.want)
			}
			if st.want == stun.CodeForbidden && !refusedAfterAuth(err) {
				t.Fatalf("%s: 403 without MESSAGE-INTEGRITY", st.name)
			}
			if grew := policyDrops() > before; grew != (st.want == stun.CodeForbidden) {
				t.Fatalf("%s: policy drop counted %v, want %v", st.name, grew, st.want == stun.CodeForbidden)
			}
		}
	}
	bind := func(num uint16, ip netip.Addr) func() error {
		return func() error { return c.channelBind(num, netip.AddrPortFrom(ip, 9)) }
	}
	perm := func(ip netip.Addr) func() error { return func() error { return p.permit(ip, false) } }

	check([]step{
		{name: "ChannelBind to a private peer", do: bind(0x4000, priv), want: stun.CodeForbidden},
		{name: "CreatePermission for a private peer", do: perm(priv), want: stun.CodeForbidden},
		{name: "ChannelBind to a public peer", do: bind(0x4001, public)},
	})
	if st := s.Stats(); st.Channels != 1 {
		t.Fatalf("channels %d after one accepted ChannelBind, want 1", st.Channels)
	}

	s.SetPeerPolicy(PeerPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
	check([]step{
		{name: "after allow: CreatePermission for the private peer", do: perm(priv)},
		{name: "after allow: ChannelBind to the private peer", do: bind(0x4002, priv)},
	})

	s.SetPeerPolicy(PeerPolicy{Deny: []netip.Prefix{netip.MustParsePrefix("8.8.8.0/24")}})
	check([]step{
		{name: "after deny: CreatePermission for the public peer", do: perm(public), want: stun.CodeForbidden},
		{name: "after deny: a new ChannelBind to it", do: bind(0x4003, public), want: stun.CodeForbidden},
		{name: "after deny: private refused again", do: perm(netip.MustParseAddr("10.1.9.9")), want: stun.CodeForbidden},
	})
	// pion keeps the channels granted before (a refused peer stops relaying: TestPolicyReloadStopsRefusedPeers).
	if st := s.Stats(); st.Channels != 2 {
		t.Fatalf("channels %d after the policy swaps, want the 2 granted before", st.Channels)
	}
}

// refusedAfterAuth reports whether err is an error response that carries MESSAGE-INTEGRITY:
// the server checked the credential and refused for another reason.
func refusedAfterAuth(err error) bool {
	var se *stunError
	return errors.As(err, &se) && se.msg.Contains(stun.AttrMessageIntegrity)
}

// A client must not reach the relay's own services through itself: its own address as a
// peer is allowed on relay-range ports only (another allocation's relayed address), so a
// channel to a listener port is refused on the data path and counted as a policy drop.
func TestPeerPolicyOwnListenerPort(t *testing.T) {
	s := startServer(t, nil) // all-loopback: loopback peers allowed
	c := newRawAllocation(t, s, "alice")
	lis := netip.MustParseAddrPort(s.addrOf(UDP))
	const num = 0x4100
	if err := c.channelBind(num, lis); err != nil {
		t.Fatalf("ChannelBind to own listener (permission is by IP): %v", err)
	}
	before := s.Stats()
	msg := []byte("binding request to myself?")
	if err := c.sendChannelData(num, msg, true); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "policy drop", func() bool { return s.Stats().Drops[metrics.DropPolicy] > before.Drops[metrics.DropPolicy] })
	if got := s.Stats().BindingRequests; got != before.BindingRequests {
		t.Fatalf("the relay answered itself: binding requests %d → %d", before.BindingRequests, got)
	}
	if tr := traffic(s, metrics.ClientToPeer, metrics.PathChannel); tr.Packets != 0 {
		t.Fatalf("a refused packet was counted as relayed: %+v", tr)
	}
	// Another allocation's relayed address on the same IP is a legal peer.
	d := newRawAllocation(t, s, "bob")
	if err := c.channelBind(num+1, d.relayed); err != nil {
		t.Fatalf("ChannelBind to another relayed address: %v", err)
	}
	if err := d.createPermission(c.relayed); err != nil {
		t.Fatalf("CreatePermission back: %v", err)
	}
	if err := c.sendChannelData(num+1, []byte("hello bob"), true); err != nil {
		t.Fatal(err)
	}
	from, data, err := d.recvData()
	if err != nil || from != c.relayed || string(data) != "hello bob" {
		t.Fatalf("bob got %q from %v (%v)", data, from, err)
	}
}

// A listener on a port of the relay range is refused at start (issue: a client could name
// it as a peer port on the relay's own address, and portalloc would find the port taken).
func TestListenerInRelayRangeRefused(t *testing.T) {
	cfg := Config{
		Listeners: []ListenerConfig{{Network: UDP, Addr: netip.MustParseAddrPort("127.0.0.1:20007")}},
		RelayIPs:  []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:   20000, MaxPort: 20010,
		Workers:  1,
		DataPath: userDataPath(),
		Logger:   testLogger(t),
	}
	s, err := New(cfg)
	if err == nil {
		s.Close()
		t.Fatal("New accepted a listener inside the relay range")
	}
	if !strings.Contains(err.Error(), "20007 is inside the relay range 20000-20010") {
		t.Fatalf("error does not say what is wrong: %v", err)
	}
}

// A reload applies the new peer policy to permissions already granted: a peer it refuses
// stops relaying at once, both ways, with the drops counted, and relays again after a
// reload that allows it (pion kept the permission and the channel all along). RFC 8656 §21
// leaves to the operator which peers may be reached; an operator who denies a range on
// reload means the live calls to it too.
func TestPolicyReloadStopsRefusedPeers(t *testing.T) {
	forEachDataPath(t, func(t *testing.T, path DataPath) {
		s := startServerOn(t, path, nil) // all-loopback: loopback peers allowed
		c := newRawAllocation(t, s, "alice")
		peer := newUDPPeer(t, "127.0.0.1:0")
		const num = 0x4321
		if err := c.channelBind(num, peer.addr()); err != nil {
			t.Fatalf("ChannelBind: %v", err)
		}
		flows := func(i int) {
			t.Helper()
			msg := payload(7, i, 48)
			if err := c.sendChannelData(num, msg, false); err != nil {
				t.Fatal(err)
			}
			peer.expect(t, i, c.relayed, msg)
			if err := peer.send(c.relayed, msg); err != nil {
				t.Fatal(err)
			}
			if n, got, err := c.recvChannelData(); err != nil || n != num || !bytes.Equal(got, msg) {
				t.Fatalf("peer → client: channel %#x %q %v, want %#x %q", n, got, err, num, msg)
			}
		}
		flows(0)

		s.SetPeerPolicy(PeerPolicy{}) // loopback refused now
		before := s.Stats().Drops[metrics.DropNoPermission]
		if err := c.sendChannelData(num, []byte("to a refused peer"), false); err != nil {
			t.Fatal(err)
		}
		if err := peer.send(c.relayed, []byte("from a refused peer")); err != nil {
			t.Fatal(err)
		}
		pollUntil(t, "both packets dropped", func() bool {
			return s.Stats().Drops[metrics.DropNoPermission] >= before+2
		})
		if got, from, err := peer.recv(50 * time.Millisecond); err == nil {
			t.Fatalf("peer got %q from %v after the reload refused it", got, from)
		}
		if err := c.expectSilence(50 * time.Millisecond); err != nil {
			t.Fatalf("client: %v after the reload refused its peer", err)
		}

		s.SetPeerPolicy(PeerPolicy{AllowLoopback: true})
		flows(1)
	})
}
