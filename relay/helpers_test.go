//go:build linux

package relay

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay/internal/uring"
)

var testSecret = []byte("test-secret-0123456789")

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("AVEDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Relay port ranges of the tests are disjoint per package, because `go test ./...` runs
// packages in parallel and a range test must not see another package's relay ports:
// relay 20000–29999 (startServer) and 19000–19999 (small ranges); probe 30000–30999;
// cmd/avedge-probe 18000–18999; deploy 16000–17999; cmd/avedge 32000–32099 and 15000–15099.
// All lie below Linux's ephemeral range, so the kernel does not hand them out either.

// userDataPath is the user-space loop data path auto picks here: io_uring where this kernel
// runs it, else epoll. Tests pin it where they would otherwise get auto, which as root puts
// the kernel fast path's tc variant on the lo of the namespace the tests run in (the host's,
// under make test): relays that tests start outside a namespace of their own relay in user
// space (nsguard panics otherwise).
func userDataPath() DataPath {
	if uring.Usable() == nil {
		return DataPathIOUring
	}
	return DataPathEpoll
}

// startServer runs a relay on loopback with ephemeral listener ports and a test range, on a
// user-space data path (userDataPath) unless mod sets another.
func startServer(t testing.TB, mod func(c *Config)) *Server {
	t.Helper()
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	cfg := Config{
		DataPath:  userDataPath(),
		Listeners: []ListenerConfig{{Network: UDP, Addr: lo}, {Network: TCP, Addr: lo}},
		RelayIPs:  []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:   20000, MaxPort: 29999,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: testSecret})}),
		Peers:     PeerPolicy{AllowLoopback: true},
		Workers:   2,
		Logger:    testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startServerOn is startServer with the given data path.
func startServerOn(t testing.TB, path DataPath, mod func(c *Config)) *Server {
	t.Helper()
	return startServer(t, func(c *Config) {
		c.DataPath = path
		if mod != nil {
			mod(c)
		}
	})
}

// forEachDataPath runs test once per forwarding loop: epoll, and io_uring where this kernel
// runs it (skipped, with the reason, where it does not).
func forEachDataPath(t *testing.T, test func(t *testing.T, path DataPath)) {
	t.Run("epoll", func(t *testing.T) { test(t, DataPathEpoll) })
	t.Run("io_uring", func(t *testing.T) {
		if err := uring.Usable(); err != nil {
			t.Skipf("this kernel does not run the io_uring loop: %v", err)
		}
		test(t, DataPathIOUring)
	})
}

func (s *Server) addrOf(n Network) string {
	for _, l := range s.Addrs() {
		if l.Network == n {
			return l.Addr.String()
		}
	}
	return ""
}

// newClient makes a pion TURN client over UDP to s with fresh REST credentials.
func newClient(t testing.TB, s *Server, user string) *turn.Client {
	t.Helper()
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	return newClientWith(t, s.addrOf(UDP), "udp4", "127.0.0.1:0", username, password)
}

func newClientWith(t testing.TB, server, network, local, username, password string) *turn.Client {
	t.Helper()
	pc, err := net.ListenPacket(network, local)
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server,
		Conn: pc, Username: username, Password: password, Realm: "avedge",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	return c
}

// roundTrip writes msg through relay to peer and waits for the echo, retrying while the
// permission and channel are being set up (the first packets go as Send indications).
func roundTrip(t testing.TB, relay net.PacketConn, peer net.Addr, msg []byte) {
	t.Helper()
	buf := make([]byte, 2048)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := relay.WriteTo(msg, peer); err != nil {
			t.Fatalf("write through relay: %v", err)
		}
		_ = relay.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := relay.ReadFrom(buf)
		if err != nil {
			continue
		}
		if from.String() != peer.String() {
			t.Fatalf("echo from %v, want %v", from, peer)
		}
		if string(buf[:n]) != string(msg) {
			t.Fatalf("echo %q, want %q", buf[:n], msg)
		}
		return
	}
	t.Fatalf("no echo of %q from %v within 5s", msg, peer)
}
