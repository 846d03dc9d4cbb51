//go:build linux

package relay

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
)

// startProxied runs a relay whose TCP and TLS listeners take the PROXY protocol from from
// (a plain UDP listener beside them), and returns it with the roots that trust its TLS
// certificate.
func startProxied(t *testing.T, from []netip.Prefix, mod func(c *Config)) (*Server, *x509.CertPool) {
	t.Helper()
	cert, roots := selfSigned(t)
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	s := startServer(t, func(c *Config) {
		c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}, {Network: TCP, Addr: lo, ProxyProtocol: true}, {Network: TLS, Addr: lo, ProxyProtocol: true}}
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.ProxyProtocolFrom = from
		if mod != nil {
			mod(c)
		}
	})
	return s, roots
}

var loopbackProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// dialProxied connects to the listener of network n of s as a load balancer does: the
// header first, then (TLS) the client's handshake through it. It returns the client's side.
func dialProxied(t testing.TB, s *Server, n Network, roots *x509.CertPool, header []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addrOf(n), rawTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	if n != TLS {
		return c
	}
	tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	_ = tc.SetDeadline(time.Now().Add(rawTimeout))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake after the PROXY header: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

// mappedAddress sends a Binding request on c and returns the XOR-MAPPED-ADDRESS answered.
func mappedAddress(t testing.TB, c net.Conn) netip.AddrPort {
	t.Helper()
	if _, err := c.Write(bindingRequest(t)); err != nil {
		t.Fatal(err)
	}
	m, err := readSTUN(c)
	if err != nil || m.Type != stun.BindingSuccess {
		t.Fatalf("Binding: %v %v", m, err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	ip, _ := netip.AddrFromSlice(xa.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port))
}

// Behind an L4 load balancer the relay answers the client the header names: a Binding's
// XOR-MAPPED-ADDRESS is the proxied address, over TCP and over TLS (the header before the
// handshake), for both versions and both families; a LOCAL header (a health check) is
// answered with the balancer's own address.
func TestProxyProtocolBinding(t *testing.T) {
	s, roots := startProxied(t, loopbackProxies, nil)
	for _, n := range []Network{TCP, TLS} {
		for _, tc := range []struct {
			name   string
			header []byte
			want   netip.AddrPort // invalid: the connection's own address
		}{
			{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n"), ppClient4},
			{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 40001 443\r\n"), ppClient6},
			{"v2 INET", proxyV2(1, 0x11, ppClient4, ppDst4, nil), ppClient4},
			{"v2 INET6 with TLVs", proxyV2(1, 0x21, ppClient6, ppDst6, []byte{0xEA, 0, 3, 1, 'v', 'p'}), ppClient6},
			{"v2 LOCAL", proxyV2(0, 0x00, netip.AddrPort{}, netip.AddrPort{}, nil), netip.AddrPort{}},
			{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), netip.AddrPort{}},
		} {
			t.Run(string(n)+"/"+tc.name, func(t *testing.T) {
				c := dialProxied(t, s, n, roots, tc.header)
				want := tc.want
				if !want.IsValid() {
					want = c.LocalAddr().(*net.TCPAddr).AddrPort()
				}
				if got := mappedAddress(t, c); got != want {
					t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", got, want)
				}
			})
		}
	}
	if n := s.streamStats.proxyRefused.Load() + s.streamStats.proxyHeader.Load(); n != 0 {
		t.Errorf("%d connections refused, want none", n)
	}
}

// proxiedTURN is a pion TURN client over a connection that starts with header.
func proxiedTURN(t *testing.T, s *Server, n Network, roots *x509.CertPool, header []byte, user string) *turn.Client {
	t.Helper()
	conn := dialProxied(t, s, n, roots, header)
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	server := s.addrOf(n)
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server,
		Conn: turn.NewSTUNConn(conn), Username: username, Password: password, Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// An allocation through a load balancer belongs to the client the header names: its
// 5-tuple (what the nonces, the caps and the admin view key on) has the proxied address, it
// relays, and MaxStreamConnsPerSource counts connections per proxied client, not per
// balancer: two clients behind the one balancer both get in, a second connection of the
// first is closed.
func TestProxyProtocolAllocate(t *testing.T) {
	s, roots := startProxied(t, loopbackProxies, func(c *Config) { c.MaxStreamConnsPerSource = 1 })
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	second := netip.MustParseAddrPort("203.0.113.8:40002")
	for _, tc := range []struct {
		n      Network
		header []byte
		client netip.AddrPort
	}{
		{TCP, proxyV2(1, 0x11, ppClient4, ppDst4, nil), ppClient4},
		{TLS, []byte("PROXY TCP4 203.0.113.8 198.51.100.1 40002 443\r\n"), second},
	} {
		c := proxiedTURN(t, s, tc.n, roots, tc.header, "alice")
		relayed, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s: Allocate through the balancer: %v", tc.n, err)
		}
		t.Cleanup(func() { relayed.Close() })
		roundTrip(t, relayed, peer.LocalAddr(), []byte("through the balancer"))
		s.mu.Lock()
		var found bool
		for k := range s.allocs {
			found = found || k.src == tc.client
		}
		s.mu.Unlock()
		if !found {
			t.Fatalf("%s: no allocation of %v among the relay's", tc.n, tc.client)
		}
	}

	// The first client again, through the same balancer: over its per-source cap.
	c := dialProxied(t, s, TCP, roots, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 40009 443\r\n"))
	if _, err := c.Write(bindingRequest(t)); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 5*time.Second)
	if n := s.streamStats.overSource.Load(); n != 1 {
		t.Fatalf("closed over the per-source cap: %d, want 1", n)
	}
	// A third client behind the balancer still gets in.
	if got := mappedAddress(t, dialProxied(t, s, TCP, roots, []byte("PROXY TCP4 203.0.113.9 198.51.100.1 40003 443\r\n"))); got != netip.MustParseAddrPort("203.0.113.9:40003") {
		t.Fatalf("third client mapped to %v", got)
	}
}

// A PROXY protocol listener serves its load balancers alone: a connection from any other
// address is closed before a byte is read, header or not; one from a balancer without a valid
// header (a client speaking TURN straight to it, a malformed header, nothing within
// ProxyHeaderTimeout) is closed too. Each is counted.
func TestProxyProtocolRefusals(t *testing.T) {
	t.Run("not from a balancer", func(t *testing.T) {
		s, _ := startProxied(t, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, nil)
		for i, n := range []Network{TCP, TLS} {
			c, err := net.DialTimeout("tcp", s.addrOf(n), rawTimeout)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := c.Write([]byte("PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n")); err != nil {
				t.Fatal(err)
			}
			waitClosed(t, c, 5*time.Second)
			if got := s.streamStats.proxyRefused.Load(); got != uint64(i+1) {
				t.Fatalf("%s: refused %d, want %d", n, got, i+1)
			}
			if got := s.Stats().ProxyRefused; got != [metrics.NumProxyRefusals]uint64{metrics.ProxyNotFromProxy: uint64(i + 1)} {
				t.Fatalf("%s: metrics %v, want %d not from a balancer", n, got, i+1)
			}
		}
		if live := s.conns.live(); live != 0 {
			t.Errorf("%d connections hold a slot of the caps", live)
		}
	})

	s, _ := startProxied(t, loopbackProxies, func(c *Config) { c.ProxyHeaderTimeout = 300 * time.Millisecond })
	var want [metrics.NumProxyRefusals]uint64
	for i, tc := range []struct {
		name   string
		n      Network
		first  []byte
		reason metrics.ProxyRefusal
		hangUp bool // the client closes its side after first
	}{
		{"TURN without a header", TCP, nil, metrics.ProxyNoHeader, false}, // a Binding request is sent instead
		{"malformed v1", TCP, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 99999 443\r\n"), metrics.ProxyInvalidHeader, false},
		{"malformed v2", TCP, proxyV2(1, 0x12, ppClient4, ppDst4, nil), metrics.ProxyInvalidHeader, false},
		{"TLS without a header", TLS, []byte{0x16, 0x03, 0x01, 0x00, 0x40}, metrics.ProxyNoHeader, false},
		{"nothing in time", TCP, []byte{}, metrics.ProxyTimeout, false},
		{"half a header in time", TLS, []byte("PROXY TCP4 203.0"), metrics.ProxyTimeout, false},
		{"closed before a byte", TCP, []byte{}, metrics.ProxyNoHeader, true},
		{"closed in the header", TCP, []byte("PROXY TCP4 203.0"), metrics.ProxyInvalidHeader, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", s.addrOf(tc.n), rawTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			first := tc.first
			if first == nil {
				first = bindingRequest(t)
			}
			if _, err := c.Write(first); err != nil {
				t.Fatal(err)
			}
			if tc.hangUp {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			waitClosed(t, c, 5*time.Second)
			pollUntil(t, "the refusal counted", func() bool { return s.streamStats.proxyHeader.Load() == uint64(i+1) })
			want[tc.reason]++
			if got := s.Stats().ProxyRefused; got != want {
				t.Errorf("metrics %v, want %v (%s)", got, want, tc.reason)
			}
		})
	}
	pollUntil(t, "every slot given back", func() bool { return s.conns.live() == 0 })
}

// A configuration that asks for the PROXY protocol where it cannot work is refused.
func TestProxyProtocolConfig(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
	}{
		{"UDP listener", func(c *Config) {
			c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo, ProxyProtocol: true}}
			c.ProxyProtocolFrom = loopbackProxies
		}},
		{"no balancer", func(c *Config) { c.Listeners = []ListenerConfig{{Network: TCP, Addr: lo, ProxyProtocol: true}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{RelayIPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, MinPort: 19900, MaxPort: 19909, Workers: 1, DataPath: userDataPath(), Logger: testLogger(t)}
			tc.mod(&cfg)
			if s, err := New(cfg); err == nil {
				_ = s.Close()
				t.Fatal("New accepted it")
			}
		})
	}
}
