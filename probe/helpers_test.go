//go:build linux

package probe

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay"
)

var testSecret = []byte("probe-test-secret-0123456789")

const testMinPort, testMaxPort = 30000, 30999

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("AVEDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startRelay runs an in-process avedge on loopback, as relay's own tests do.
func startRelay(t testing.TB, mods ...func(*relay.Config)) *relay.Server {
	t.Helper()
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	cfg := relay.Config{
		Listeners: []relay.ListenerConfig{{Network: relay.UDP, Addr: lo}, {Network: relay.TCP, Addr: lo}},
		RelayIPs:  []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:   testMinPort, MaxPort: testMaxPort,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: testSecret})}),
		Peers:     relay.PeerPolicy{AllowLoopback: true},
		Workers:   1,
		DataPath:  relay.DataPathEpoll, // auto would attach the kernel fast path to this namespace's lo
		Logger:    testLogger(t),
	}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := relay.New(cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func relayAddr(s *relay.Server, n relay.Network) string {
	for _, l := range s.Addrs() {
		if l.Network == n {
			return l.Addr.String()
		}
	}
	return ""
}

func goodCreds() Credentials {
	u, p := auth.MintREST(testSecret, "probe", time.Now().Add(time.Hour))
	return Credentials{Username: u, Password: p}
}

func mustURLs(t testing.TB, raw ...string) []*stun.URI {
	t.Helper()
	us, err := ParseURLs(raw, Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	return us
}

func testConfig(t testing.TB, urls []*stun.URI, c Credentials) Config {
	return Config{
		URLs:            urls,
		Credentials:     c,
		NetworkTypes:    nil,
		Timeout:         5 * time.Second,
		IncludeLoopback: true,
		Logger:          testLogger(t),
	}
}
