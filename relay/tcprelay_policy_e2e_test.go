//go:build linux

package relay

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/metrics"
)

// The peer policy over the TCP relay path: a Connect (RFC 6062 §5.2) to a refused peer is
// answered 403 before the relay dials (coturn's CVE-2020-26262 let a Connect to 0.0.0.0 or
// [::] reach the relay host's own services), with every address form the UDP policy tests
// use, over IPv4 and IPv6 allocations. No test here connects anywhere but loopback: allowed
// public addresses are the UDP tests' business (they ask permissions only).

// refusedConnect checks that Connect to peer is answered 403, counted as a policy drop, and
// that the relay dialled nothing.
func refusedConnect(t *testing.T, s *Server, c *tcpAllocClient, peer xorPeerAs) {
	t.Helper()
	dials := s.tcpStats.dials.Load()
	drops := s.Stats().Drops[metrics.DropPolicy]
	refusals := s.Stats().TCPRelay.PolicyRefused
	_, err := c.connectAs(peer)
	if got := errorCode(err); got != stun.CodeForbidden {
		t.Fatalf("Connect %s port %d: %v (code %d), want 403", peer.ip, peer.port, err, got)
	}
	if !refusedAfterAuth(err) {
		t.Errorf("Connect %s: the 403 is not signed (refused before authentication?)", peer.ip)
	}
	if got := s.tcpStats.dials.Load(); got != dials {
		t.Fatalf("Connect %s: the relay dialled (%d connection attempts)", peer.ip, got-dials)
	}
	if s.Stats().Drops[metrics.DropPolicy] == drops {
		t.Errorf("403 for %s not counted as a policy drop", peer.ip)
	}
	want := refusals
	want[metrics.TCPPolicyConnect]++
	if got := s.Stats().TCPRelay.PolicyRefused; got != want {
		t.Errorf("Connect %s: TCP relay policy refusals %v, want %v", peer.ip, got, want)
	}
}

// Every address the default policy refuses is refused for Connect too, on an IPv4 and (where
// ::1 exists) an IPv6 TCP allocation; loopback peers have a listener on the named port, which
// sees no connection.
func TestTCPConnectPeerPolicyDefault(t *testing.T) {
	v6 := haveIPv6Loopback()
	s := dualStackServer(t, v6, nil)
	ql4 := silentListener(t, "127.0.0.1:0")
	port := ql4.addr().Port()
	allocs := map[bool]*tcpAllocClient{false: newRawStreamAllocationOn(t, listenAddr(s, TCP, false), nil, "connect4")}
	var ql6 quietListener
	if v6 {
		allocs[true] = newRawStreamAllocationOn(t, listenAddr(s, TCP, true), nil, "connect6", requestedFamilyIPv6)
		ql6 = silentListener(t, "[::1]:0")
	}
	cases := append([]peerCase(nil), defaultPolicyCases...)
	// The loopback and wildcard forms of a port that has a listener (coturn's bypass class).
	for _, pc := range []peerCase{
		{name: "loopback listener", peer: "127.0.0.1"},
		{name: "wildcard v4 to listener", peer: "0.0.0.0"},
		{name: "v4-mapped loopback on v4 allocation", peer: "::ffff:127.0.0.1", mappedOn4: true},
		{name: "v4-mapped wildcard on v4 allocation", peer: "::ffff:0.0.0.0", mappedOn4: true},
		{name: "v4-mapped loopback on v6 allocation", peer: "::ffff:127.0.0.1"},
		{name: "loopback v6 listener", peer: "::1"},
		{name: "wildcard v6 to listener", peer: "::"},
		{name: "v4-compatible loopback", peer: "::127.0.0.1"},
		{name: "nat64 loopback listener", peer: "64:ff9b::127.0.0.1"},
	} {
		pc.want = stun.CodeForbidden
		cases = append(cases, pc)
	}
	for _, tc := range cases {
		if tc.want == 0 {
			continue // allowed public address: a Connect would dial out
		}
		t.Run(tc.name, func(t *testing.T) {
			peer := netip.MustParseAddr(tc.peer)
			six := peer.Is6() && !tc.mappedOn4
			c, ok := allocs[six]
			if !ok {
				t.Skip("::1 is not configured: no IPv6 allocation")
			}
			refusedConnect(t, s, c, xorPeerAs{ip: peer, port: port, six: peer.Is6()})
			if ql4.accepted() {
				t.Fatal("the IPv4 loopback listener was connected to")
			}
			if v6 && ql6.accepted() {
				t.Fatal("the IPv6 loopback listener was connected to")
			}
		})
	}
}

// With loopback peers allowed (the all-loopback setup), the relay's own listeners are still
// refused by port, in every form; another TCP allocation's relayed address is a legal peer.
func TestTCPConnectOwnAddresses(t *testing.T) {
	v6 := haveIPv6Loopback()
	s := dualStackServer(t, v6, func(c *Config) { c.Peers = PeerPolicy{AllowLoopback: true} })
	c := newRawStreamAllocationOn(t, listenAddr(s, TCP, false), nil, "own4")
	for _, l := range s.Addrs() {
		if l.Addr.Addr().Is6() {
			continue
		}
		port := l.Addr.Port()
		for _, p := range []xorPeerAs{
			{ip: netip.MustParseAddr("127.0.0.1"), port: port},
			{ip: netip.MustParseAddr("0.0.0.0"), port: port},
			{ip: netip.MustParseAddr("::ffff:127.0.0.1"), port: port, six: true},
		} {
			t.Run(string(l.Network)+" "+p.ip.String(), func(t *testing.T) { refusedConnect(t, s, c, p) })
		}
	}
	if v6 {
		c6 := newRawStreamAllocationOn(t, listenAddr(s, TCP, true), nil, "own6", requestedFamilyIPv6)
		for _, l := range s.Addrs() {
			if !l.Addr.Addr().Is6() {
				continue
			}
			for _, ip := range []string{"::1", "::"} {
				p := xorPeerAs{ip: netip.MustParseAddr(ip), port: l.Addr.Port(), six: true}
				t.Run(string(l.Network)+" "+ip, func(t *testing.T) { refusedConnect(t, s, c6, p) })
			}
		}
	}
	// Another TCP allocation of this relay: allowed, and relays.
	d := newRawStreamAllocationOn(t, listenAddr(s, TCP, false), nil, "own4b")
	if _, err := d.authedOn(d.conn, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), xorPeerAs{ip: c.relayed.Addr(), port: 9}); err != nil {
		t.Fatalf("CreatePermission for the other allocation: %v", err)
	}
	id, err := c.connect(d.relayed)
	if err != nil {
		t.Fatalf("Connect to another allocation's relayed address: %v", err)
	}
	if _, err := c.bind(id); err != nil {
		t.Fatalf("ConnectionBind: %v", err)
	}
}

// With AllowLoopback, a loopback peer is reachable by Connect from a loopback client only: a
// remote client of a relay configured so must not reach the host's loopback TCP services.
// Every client of a test is on loopback, so this drives the PermissionHandler with a remote
// source as pion would give it.
func TestTCPConnectLoopbackFromRemoteClient(t *testing.T) {
	s := startServer(t, nil) // AllowLoopback
	for _, tc := range []struct {
		client, peer string
		want         bool
	}{
		{"198.51.100.7:40000", "127.0.0.1:8443", false},
		{"198.51.100.7:40000", "[::ffff:127.0.0.1]:8443", false},
		{"[2001:db8::7]:40000", "[::1]:8443", false},
		{"127.0.0.1:40000", "127.0.0.1:8443", true},
		{"[::1]:40000", "[::1]:8443", true},
	} {
		src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.client))
		peer := netip.MustParseAddrPort(tc.peer)
		req, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodConnect, stun.ClassRequest),
			xorPeerAs{ip: peer.Addr(), port: peer.Port(), six: peer.Addr().Is6()})
		if err != nil {
			t.Fatal(err)
		}
		s.noteConnect(req.Raw, src)
		if got := s.permitPeer(src, peer.Addr().AsSlice()); got != tc.want {
			t.Errorf("Connect from %s to %s permitted: %v, want %v", tc.client, tc.peer, got, tc.want)
		}
		s.forgetConnect(mustConnectAnswer(t, req), src)
	}
	if n := s.connects.live.Load(); n != 0 {
		t.Errorf("%d Connect notes left after their answers", n)
	}
}

// mustConnectAnswer builds an error answer to Connect request req, as pion would write it.
func mustConnectAnswer(t *testing.T, req *stun.Message) []byte {
	t.Helper()
	res, err := stun.Build(&stun.Message{TransactionID: req.TransactionID},
		stun.NewType(stun.MethodConnect, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: stun.CodeForbidden})
	if err != nil {
		t.Fatal(err)
	}
	return res.Raw
}
