//go:build linux

package relay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// RFC 8656 §7.3: the success response carries "An XOR-RELAYED-ADDRESS attribute containing
// the relayed transport address" and "An XOR-MAPPED-ADDRESS attribute containing the client's
// IP address and port (from the 5-tuple)". Behind a NAT the relay advertises its external
// address (coturn's external-ip).
func TestAllocateRelayedAddress(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ext := netip.MustParseAddr("203.0.113.7")
	for _, tc := range []struct {
		name      string
		external  map[netip.Addr]netip.Addr
		advertise netip.Addr
	}{
		{name: "relay ip", advertise: lo},
		{name: "external ip", external: map[netip.Addr]netip.Addr{lo: ext}, advertise: ext},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const min, max = 21000, 21099
			s := startServer(t, func(c *Config) {
				c.MinPort, c.MaxPort = min, max
				c.ExternalIPs = tc.external
			})

			// pion's client.
			c := newClient(t, s, "alice")
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate: %v", err)
			}
			t.Cleanup(func() { relay.Close() })
			ra := relay.LocalAddr().(*net.UDPAddr).AddrPort()
			if ra.Addr().Unmap() != tc.advertise || ra.Port() < min || ra.Port() > max {
				t.Fatalf("XOR-RELAYED-ADDRESS %v, want %v:%d-%d", ra, tc.advertise, min, max)
			}
			st := s.Stats()
			if st.Allocations[metrics.TransportUDP][metrics.FamilyIPv4] != 1 || st.Ports.Held != 1 {
				t.Fatalf("after one allocation: allocations %v, ports held %d", st.Allocations, st.Ports.Held)
			}

			// Our raw client: the mapped address is the client's, and the relay socket is
			// really bound on the relay IP at the advertised port and relays.
			rc := newRawAllocation(t, s, "bob")
			if rc.mapped != rc.conn.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Errorf("XOR-MAPPED-ADDRESS %v, want the client's %v", rc.mapped, rc.conn.LocalAddr())
			}
			if rc.relayed.Addr() != tc.advertise {
				t.Errorf("raw XOR-RELAYED-ADDRESS %v, want IP %v", rc.relayed, tc.advertise)
			}
			peer := newUDPPeer(t, "127.0.0.1:0")
			if err := rc.channelBind(0x4000, peer.addr()); err != nil {
				t.Fatalf("ChannelBind: %v", err)
			}
			if err := rc.sendChannelData(0x4000, []byte("hello"), true); err != nil {
				t.Fatal(err)
			}
			got, from, err := peer.recv(rawTimeout)
			if err != nil || string(got) != "hello" {
				t.Fatalf("peer got %q, %v", got, err)
			}
			if want := netip.AddrPortFrom(lo, rc.relayed.Port()); from != want {
				t.Errorf("peer saw the relay as %v, want %v", from, want)
			}
			if err := peer.send(from, []byte("back")); err != nil {
				t.Fatal(err)
			}
			if num, data, err := rc.recvChannelData(); err != nil || num != 0x4000 || string(data) != "back" {
				t.Fatalf("client got %#x %q, %v", num, data, err)
			}
		})
	}
}

// freePortRange finds n consecutive UDP ports on 127.0.0.1 below the ephemeral range that
// nothing holds right now, so that a test of range exhaustion is not disturbed by another
// process.
func freePortRange(t testing.TB, n int) uint16 {
	t.Helper()
	for base := 19000; base+n <= 19890; base += 37 {
		var held []*net.UDPConn
		ok := true
		for p := base; p < base+n; p++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
			if err != nil {
				ok = false
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return uint16(base)
		}
	}
	t.Skipf("no %d free consecutive UDP ports between 19000 and 19890", n)
	return 0
}

// RFC 8656 §7.2: "If the server cannot satisfy the request, then the server rejects the
// request with a 508 (Insufficient Capacity) error." A range of four ports gives four
// allocations; the fifth gets 508 and STUN still answers; a released port serves again at
// once when quarantine is off; a port some other process holds is never handed out.
func TestPortRangeExhaustion(t *testing.T) {
	type closer struct {
		name  string
		close func(t *testing.T, pc net.PacketConn, raw *rawClient)
	}
	for _, cl := range []closer{
		{"pion close", func(t *testing.T, pc net.PacketConn, _ *rawClient) { _ = pc.Close() }},
		{"refresh 0", func(t *testing.T, _ net.PacketConn, raw *rawClient) {
			if err := raw.refresh(0); err != nil {
				t.Fatalf("Refresh lifetime 0: %v", err)
			}
		}},
	} {
		t.Run(cl.name, func(t *testing.T) {
			base := freePortRange(t, 4)
			s := startServer(t, func(c *Config) {
				c.MinPort, c.MaxPort = base, base+3
				c.PortQuarantine = -1
			})
			seen := map[uint16]bool{}
			var first net.PacketConn
			var raw *rawClient
			for i := 0; i < 4; i++ {
				var port uint16
				if i == 0 && cl.name == "refresh 0" {
					raw = newRawAllocation(t, s, "user0")
					port = raw.relayed.Port()
				} else {
					pc, err := newClient(t, s, fmt.Sprintf("user%d", i)).Allocate()
					if err != nil {
						t.Fatalf("allocation %d of 4: %v", i+1, err)
					}
					t.Cleanup(func() { pc.Close() })
					if i == 0 {
						first = pc
					}
					port = uint16(pc.LocalAddr().(*net.UDPAddr).Port)
				}
				if port < base || port > base+3 || seen[port] {
					t.Fatalf("allocation %d got port %d (range %d-%d, seen %v)", i+1, port, base, base+3, seen)
				}
				seen[port] = true
			}
			if st := s.Stats(); st.Ports.Held != 4 || st.Ports.Capacity != 4 {
				t.Fatalf("ports held %d of %d, want 4 of 4", st.Ports.Held, st.Ports.Capacity)
			}

			fifth := newClient(t, s, "user4")
			_, err := fifth.Allocate()
			if errorCode(err) != stun.CodeInsufficientCapacity || !strings.Contains(err.Error(), "508") {
				t.Fatalf("fifth allocation: %v, want 508 Insufficient Capacity", err)
			}
			if _, err := fifth.SendBindingRequest(); err != nil {
				t.Fatalf("Binding after 508: %v", err)
			}

			cl.close(t, first, raw)
			pollUntil(t, "the port to be released", func() bool { return s.Stats().Ports.Held == 3 })
			pc, err := fifth.Allocate()
			if err != nil {
				t.Fatalf("allocation after one was closed: %v", err)
			}
			t.Cleanup(func() { pc.Close() })
			if p := uint16(pc.LocalAddr().(*net.UDPAddr).Port); p < base || p > base+3 {
				t.Fatalf("port %d outside %d-%d", p, base, base+3)
			}
		})
	}
	t.Run("port held outside", func(t *testing.T) {
		base := freePortRange(t, 4)
		held := base + 1
		outside, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(held)})
		if err != nil {
			t.Skipf("cannot hold port %d: %v", held, err)
		}
		t.Cleanup(func() { outside.Close() })
		s := startServer(t, func(c *Config) {
			c.MinPort, c.MaxPort = base, base+3
			c.PortQuarantine = -1
		})
		for i := 0; i < 3; i++ {
			pc, err := newClient(t, s, fmt.Sprintf("user%d", i)).Allocate()
			if err != nil {
				t.Fatalf("allocation %d of 3: %v", i+1, err)
			}
			t.Cleanup(func() { pc.Close() })
			if p := uint16(pc.LocalAddr().(*net.UDPAddr).Port); p == held {
				t.Fatalf("allocation %d was given port %d, which another socket holds", i+1, p)
			}
		}
		_, err = newClient(t, s, "user3").Allocate()
		if errorCode(err) != stun.CodeInsufficientCapacity {
			t.Fatalf("fourth allocation with one port held outside: %v, want 508", err)
		}
	})
}

// RFC 8489 §9.2.4: a request whose credentials do not check out gets 401 with REALM and a
// NONCE, and no allocation is made.
func TestAllocateRejectsBadCredentials(t *testing.T) {
	now := time.Now()
	goodUser, _ := auth.MintREST(testSecret, "alice", now.Add(time.Hour))
	expiredUser, expiredPass := auth.MintREST(testSecret, "alice", now.Add(-time.Hour))
	otherUser, otherPass := auth.MintREST([]byte("some-other-secret"), "alice", now.Add(time.Hour))
	unknownKeyUser, unknownKeyPass := auth.MintMRAS(auth.Secret{ID: "nokey", Value: testSecret}, "alice", now.Add(time.Hour))
	for _, tc := range []struct {
		name, username, password string
	}{
		{name: "wrong password", username: goodUser, password: "wrong"},
		{name: "expired REST username", username: expiredUser, password: expiredPass},
		{name: "REST username signed with another secret", username: otherUser, password: otherPass},
		{name: "keyed username with unknown key", username: unknownKeyUser, password: unknownKeyPass},
		{name: "malformed keyed username", username: "mras1:k1:notanumber", password: "x"},
		{name: "malformed expiry", username: "12x:alice", password: "x"},
		{name: "control character", username: "1999999999:al\x01ice", password: "x"},
		{name: "oversized username", username: strings.Repeat("9", 513), password: "x"},
		{name: "unknown static user", username: "mallory", password: "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, nil)
			c := dialRaw(t, s.addrOf(UDP), tc.username, tc.password)
			err := c.allocate()
			var se *stunError
			if !errors.As(err, &se) || se.code != stun.CodeUnauthorized {
				t.Fatalf("allocate: %v, want 401", err)
			}
			var nonce stun.Nonce
			var realm stun.Realm
			if nonce.GetFrom(se.msg) != nil || realm.GetFrom(se.msg) != nil || realm.String() != "avedge" {
				t.Errorf("401 without a fresh NONCE and REALM avedge: %v", se.msg)
			}
			if !noAllocations(s) {
				st := s.Stats()
				t.Fatalf("rejected credential left allocations %v, ports held %d", st.Allocations, st.Ports.Held)
			}
			// pion's client reports the same 401.
			_, err = newClientWith(t, s.addrOf(UDP), "udp4", "127.0.0.1:0", tc.username, tc.password).Allocate()
			if errorCode(err) != stun.CodeUnauthorized {
				t.Fatalf("pion client: %v, want 401", err)
			}
			if !noAllocations(s) {
				t.Fatal("rejected credential left an allocation")
			}
		})
	}
}

// echoThrough runs n round trips from a pion relayed conn through an echo peer, each with a
// byte-exact check.
func echoThrough(t testing.TB, relay net.PacketConn, peer net.Addr, n, size int) {
	t.Helper()
	buf := make([]byte, 2048)
	for i := 0; i < n; i++ {
		msg := payload(9, i, size)
		if _, err := relay.WriteTo(msg, peer); err != nil {
			t.Fatalf("write %d through relay: %v", i, err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(rawTimeout))
		got, from, err := relay.ReadFrom(buf)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if from.String() != peer.String() || !bytes.Equal(buf[:got], msg) {
			t.Fatalf("echo %d from %v: % x, want % x from %v", i, from, buf[:got], msg, peer)
		}
	}
}

// Several relay addresses of one family multiply the relay range: allocations are spread
// over them, the relay answers 508 only once every address's range is full, and a port
// freed on any address is used again. (Relay ports 19900-19903 on 127.0.0.2 and 127.0.0.3:
// another package's range must not overlap; these addresses are this test's own.)
func TestSeveralRelayAddresses(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	s := startServer(t, func(c *Config) {
		c.RelayIPs = ips
		c.MinPort, c.MaxPort = 19900, 19903
		c.PortQuarantine = -1
		c.UserQuota = -1
	})
	if st := s.Stats(); st.Ports.Capacity != 8 {
		t.Fatalf("port capacity %d, want 8 (4 ports on each of 2 addresses)", st.Ports.Capacity)
	}
	perIP := map[netip.Addr]int{}
	var clients []*rawClient
	for i := 0; i < 8; i++ {
		c := newRawAllocation(t, s, fmt.Sprintf("multi%d", i))
		perIP[c.relayed.Addr()]++
		clients = append(clients, c)
	}
	for _, ip := range ips {
		if perIP[ip] != 4 {
			t.Fatalf("allocations per relay address %v, want 4 on each of %v", perIP, ips)
		}
	}
	username, password := auth.MintREST(testSecret, "multi-extra", time.Now().Add(time.Hour))
	extra := dialRaw(t, s.addrOf(UDP), username, password)
	if err := extra.allocate(); errorCode(err) != stun.CodeInsufficientCapacity {
		t.Fatalf("ninth allocation: %v, want 508", err)
	}
	// Free one on the second address: the next allocation takes that port, wherever the
	// search starts.
	var freed netip.AddrPort
	for _, c := range clients {
		if c.relayed.Addr() == ips[1] {
			freed = c.relayed
			if err := c.refresh(0); err != nil {
				t.Fatalf("Refresh(0): %v", err)
			}
			break
		}
	}
	pollUntil(t, "the port to be released", func() bool { return s.Stats().Ports.Held == 7 })
	again := dialRaw(t, s.addrOf(UDP), username, password)
	if err := again.allocate(); err != nil {
		t.Fatalf("allocation after a port was freed: %v", err)
	}
	if again.relayed != freed {
		t.Fatalf("got relayed address %s, want the freed %s", again.relayed, freed)
	}
}
