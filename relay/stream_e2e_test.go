//go:build linux

package relay

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"

	"github.com/avedge/avedge/internal/testcert"
)

// selfSigned returns a server certificate for 127.0.0.1 and ::1, made for this test run, and
// a pool that trusts it.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	p := testcert.New(t, testcert.Options{CommonName: "avedge test relay", IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, CA: true})
	return p.TLS, p.Pool()
}

// newStreamClient makes a pion TURN client over TCP, or TLS when roots is not nil, framed
// with turn.NewSTUNConn (RFC 8656 §6.2: over a stream, STUN and ChannelData messages follow
// each other, ChannelData padded to four bytes).
func newStreamClient(t testing.TB, server string, roots *x509.CertPool, username, password string) *turn.Client {
	t.Helper()
	d := net.Dialer{Timeout: rawTimeout}
	var conn net.Conn
	var err error
	if roots != nil {
		conn, err = tls.DialWithDialer(&d, "tcp", server, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	} else {
		conn, err = d.Dial("tcp", server)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", server, err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server,
		Conn: turn.NewSTUNConn(conn), Username: username, Password: password, Realm: "avedge",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// RFC 8656 §3.1: "TURN ... can be used with UDP, TCP, or TLS-over-TCP between the client and
// the server"; the relayed address is UDP whatever the client transport.
func TestAllocateOverStreams(t *testing.T) {
	cert, roots := selfSigned(t)
	for _, tc := range []struct {
		name      string
		network   Network
		roots     *x509.CertPool
		transport metrics.Transport
	}{
		{name: "tcp", network: TCP, transport: metrics.TransportTCP},
		{name: "tls", network: TLS, roots: roots, transport: metrics.TransportTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, func(c *Config) {
				lo := netip.MustParseAddrPort("127.0.0.1:0")
				c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}, {Network: tc.network, Addr: lo}}
				c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			})
			username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
			c := newStreamClient(t, s.addrOf(tc.network), tc.roots, username, password)
			if _, err := c.SendBindingRequest(); err != nil {
				t.Fatalf("Binding over %s: %v", tc.name, err)
			}
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate over %s: %v", tc.name, err)
			}
			t.Cleanup(func() { relay.Close() })
			ra := relay.LocalAddr().(*net.UDPAddr)
			if !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < 20000 || ra.Port > 29999 {
				t.Fatalf("relayed address %v, want 127.0.0.1:20000-29999", ra)
			}
			if st := s.Stats(); st.Allocations[tc.transport][metrics.FamilyIPv4] != 1 {
				t.Fatalf("allocations %v, want one %s/ipv4", st.Allocations, tc.transport)
			}

			// pion's client sends Send indications until its ChannelBind succeeds, then
			// ChannelData. The stream is reliable and so is loopback, so every write
			// arrives exactly once: the two paths together count every packet.
			peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
			const n, size = 30, 120
			k := 0 // round trips until the first ChannelData is counted
			deadline := time.Now().Add(3 * time.Second)
			for traffic(s, metrics.ClientToPeer, metrics.PathChannel).Packets == 0 {
				if time.Now().After(deadline) || k == 1000 {
					t.Fatalf("no ChannelData after %d round trips", k)
				}
				echoThrough(t, relay, peer.LocalAddr(), 1, size)
				k++
			}
			// A packet is counted once the relay has sent it, so its echo can come back
			// first: wait for the counts of every packet sent so far.
			counted := func(want int) func() bool {
				return func() bool {
					st := s.Stats().Traffic
					for dir := metrics.ClientToPeer; dir <= metrics.PeerToClient; dir++ {
						if st[dir][metrics.PathChannel].Packets+st[dir][metrics.PathIndication].Packets < uint64(want) {
							return false
						}
					}
					return true
				}
			}
			pollUntil(t, "the first packets counted", counted(k))
			// Once the channel is bound every further packet takes it, both ways.
			st0 := s.Stats().Traffic
			echoThrough(t, relay, peer.LocalAddr(), n, size)
			pollUntil(t, "all counted", counted(k+n))
			st := s.Stats().Traffic
			all := uint64(k + n)
			for dir := metrics.ClientToPeer; dir <= metrics.PeerToClient; dir++ {
				ch := st[dir][metrics.PathChannel]
				ind := st[dir][metrics.PathIndication]
				if ch.Packets+ind.Packets != all || ch.Bytes+ind.Bytes != all*size {
					t.Errorf("%s: channel %+v + indication %+v, want %d packets, %d bytes in all", dir, ch, ind, all, all*size)
				}
				if d := ch.Packets - st0[dir][metrics.PathChannel].Packets; d != n {
					t.Errorf("%s: %d of the last %d packets took the channel", dir, d, n)
				}
			}
		})
	}
}

// RFC 8656 §12.4: on receiving ChannelData "the server MUST also check that there is a
// permission installed for the peer's IP address; if not, the message is silently
// discarded." A channel (10 minutes) outlives its permission (here 1 s) unless the client
// refreshes the permission; pion forwards a stream client's ChannelData on the channel alone,
// so the relay checks the permission itself, as the UDP data path does.
func TestStreamChannelDataNeedsPermission(t *testing.T) {
	s := startServer(t, func(c *Config) { c.PermissionLifetime = time.Second })
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	c := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over tcp: %v", err)
	}
	t.Cleanup(func() { relay.Close() })
	peer := newUDPPeer(t, "127.0.0.1:0")
	peerAddr := net.UDPAddrFromAddrPort(peer.addr())
	relayed := relay.LocalAddr().(*net.UDPAddr).AddrPort()

	// pion's client sends Send indications until its ChannelBind succeeds, then ChannelData.
	for i := 0; traffic(s, metrics.ClientToPeer, metrics.PathChannel).Packets == 0; i++ {
		if i == 100 {
			t.Fatal("no ChannelData after 100 packets")
		}
		msg := payload(1, i, 64)
		if _, err := relay.WriteTo(msg, peerAddr); err != nil {
			t.Fatal(err)
		}
		peer.expect(t, i, relayed, msg)
	}
	if st := s.Stats(); st.Channels != 1 {
		t.Fatalf("channels %d, want 1", st.Channels)
	}

	// The permission expires; the channel stays (pion's client refreshes neither so soon).
	pollUntil(t, "the permission to expire", func() bool { return s.Stats().Permissions == 0 })
	if st := s.Stats(); st.Channels != 1 {
		t.Fatalf("channels %d after the permission expired, want 1", st.Channels)
	}
	before := s.Stats()
	if _, err := relay.WriteTo([]byte("no permission"), peerAddr); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "a no-permission drop", func() bool {
		return s.Stats().Drops[metrics.DropNoPermission] > before.Drops[metrics.DropNoPermission]
	})
	if got, from, err := peer.recv(100 * time.Millisecond); err == nil {
		t.Fatalf("peer got %q from %v without a permission", got, from)
	}
	if tr := traffic(s, metrics.ClientToPeer, metrics.PathChannel); tr.Packets != before.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets {
		t.Fatalf("a dropped packet was counted as relayed: %+v", tr)
	}
}
