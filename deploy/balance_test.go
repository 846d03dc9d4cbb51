//go:build linux

package deploy_test

import (
	"context"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
	avpool "github.com/avedge/avedge/pool"
	avprobe "github.com/avedge/avedge/probe"
	"github.com/avedge/avedge/relay"
)

// poolMember is one relay of the balanced pool, wired as cmd/avedge wires it: its load
// document served over HTTP (avpool.Handler), and relay.Config.Redirect asking the relays'
// monitor for a less-loaded member once the relay's score is over its threshold.
type poolMember struct {
	srv       *relay.Server
	addr      string // UDP ip:port
	min, max  uint16 // relay port range
	rep       atomic.Pointer[avpool.Reporter]
	threshold atomic.Value // float64; 0: never overloaded
	load      *httptest.Server
	reg       *prometheus.Registry
}

func (m *poolMember) loadURL() string { return m.load.URL + "/load" }

// redirects reads avedge_allocation_redirects_total{reason} from the member's registry.
func (m *poolMember) redirects(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "avedge_allocation_redirects_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no avedge_allocation_redirects_total{reason=%q}", reason)
	return 0
}

func startBalancedMember(t *testing.T, v *auth.Validator, min, max uint16, peers *atomic.Pointer[avpool.Monitor]) *poolMember {
	t.Helper()
	m := &poolMember{min: min, max: max, reg: prometheus.NewRegistry()}
	m.threshold.Store(0.0)
	met, err := metrics.New(m.reg, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := relay.New(relay.Config{
		Listeners: []relay.ListenerConfig{{Network: relay.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}},
		RelayIPs:  []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:   min, MaxPort: max,
		Validator: v,
		Peers:     relay.PeerPolicy{AllowLoopback: true},
		Workers:   1,
		DataPath:  relay.DataPathEpoll, // auto would attach the kernel fast path to this namespace's lo
		Metrics:   met,
		Logger:    quietLogger(),
		Redirect: func(client netip.AddrPort, draining bool) (netip.AddrPort, bool) {
			rep, mon := m.rep.Load(), peers.Load()
			limit := m.threshold.Load().(float64)
			if rep == nil || mon == nil || !draining && (limit <= 0 || rep.Load().Score() <= limit) {
				return netip.AddrPort{}, false
			}
			if limit <= 0 {
				limit = 1
			}
			return mon.Alternate(rep.Instance(), limit, client.Addr())
		},
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m.srv, m.addr = s, s.Addrs()[0].Addr.String()
	ap := netip.MustParseAddrPort(m.addr)
	rep, err := avpool.NewReporter(avpool.ReporterConfig{
		Stats: s.Stats, Ready: s.Ready,
		Relays:     []avpool.Endpoint{{Location: auth.LocationInternet, HostName: ap.Addr().String(), UDPPort: int(ap.Port())}},
		Alternates: []string{m.addr},
		// Every relay of the test lives in one process: its CPU time says nothing of any one
		// of them, so the score here is the ports in use.
		CPUTime: func() time.Duration { return 0 },
		MaxAge:  -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	m.rep.Store(rep)
	m.load = httptest.NewServer(avpool.Handler(rep.Load))
	t.Cleanup(m.load.Close)
	return m
}

// TestPoolBalancesItself: three relays, a credential service that polls their load
// documents, and relays that redirect when over their threshold. Every poll is driven by the
// test (Monitor.Poll), so nothing waits on a timer.
func TestPoolBalancesItself(t *testing.T) {
	keyring := auth.NewKeyring(auth.Secret{ID: "k1", Value: []byte("pool-shared-secret-0123456789")})
	validator := auth.NewValidator(auth.ValidatorConfig{Keyring: keyring, Skew: 30 * time.Second})
	ctx := context.Background()

	// The relays' view of the pool: each relay would poll its peers; one monitor serves the
	// three here, as Alternate leaves out the asking relay by its instance ID.
	var peers atomic.Pointer[avpool.Monitor]
	var a, b, c *poolMember
	// 100 ports each: one allocation is a score of 0.01.
	a = startBalancedMember(t, validator, 18000, 18099, &peers)
	b = startBalancedMember(t, validator, 19000, 19099, &peers)
	c = startBalancedMember(t, validator, 20000, 20099, &peers)
	name := map[string]string{a.addr: "A", b.addr: "B", c.addr: "C"}
	urls := []string{a.loadURL(), b.loadURL(), c.loadURL()}
	newMonitor := func() *avpool.Monitor {
		mon, err := avpool.NewMonitor(avpool.MonitorConfig{URLs: urls, Interval: time.Hour, Timeout: 2 * time.Second, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return mon
	}
	relaysView, serviceView := newMonitor(), newMonitor()
	peers.Store(relaysView)

	svc, err := auth.NewService(auth.ServiceConfig{
		Keyring: keyring,
		Pool:    serviceView.Relays,
		APIKeys: []string{poolAPIKey},
		Logger:  quietLogger(),
	})
	if err != nil {
		t.Fatalf("auth.NewService: %v", err)
	}
	hs := httptest.NewServer(svc)
	t.Cleanup(hs.Close)
	// listed polls the pool once and returns the relays new credentials name, in order.
	listed := func(t *testing.T) []string {
		t.Helper()
		serviceView.Poll(ctx)
		var out []string
		for _, addr := range udpRelays(t, fetchCredentials(t, hs.URL).URIs) {
			out = append(out, name[addr])
		}
		return out
	}
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	cred := fetchCredentials(t, hs.URL)

	if got := listed(t); len(got) != 3 {
		t.Fatalf("idle pool lists %v, want all three", got)
	}

	outer := t // the load on A lasts to the end of the test
	t.Run("loaded relay listed last", func(t *testing.T) {
		// Ten real allocations on A: its score is 0.10, past the hysteresis margin.
		for i := 0; i < 10; i++ {
			conn, err := turnClient(outer, a.addr, cred.Username, cred.Password).Allocate()
			if err != nil {
				t.Fatalf("allocation %d on A: %v", i, err)
			}
			outer.Cleanup(func() { conn.Close() })
		}
		got := listed(t)
		if len(got) != 3 || got[2] != "A" {
			t.Fatalf("with A loaded, new credentials list %v, want B and C before A", got)
		}
		for _, st := range serviceView.PoolMembers() {
			if st.Member == a.loadURL() && (st.Allocations != 10 || st.Rank != 3 || st.Score < 0.1) {
				t.Fatalf("the service believes of A %+v, want 10 allocations, rank 3, score 0.10", st)
			}
		}
	})

	t.Run("draining relay leaves the lists, its calls go on", func(t *testing.T) {
		conn, err := turnClient(t, b.addr, cred.Username, cred.Password).Allocate()
		if err != nil {
			t.Fatalf("allocate on B: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		roundTrip(t, conn, peer.LocalAddr(), []byte("call on B"))
		call := startFlow(conn, peer.LocalAddr())
		defer call.halt()
		if !call.waitFor(func() bool { return call.echoed.Load() >= 20 }) {
			t.Fatalf("the call on B did not get going: %v", call.err)
		}
		b.srv.Drain()
		call.drained.Store(true)
		if got := listed(t); slices.Contains(got, "B") || len(got) != 2 {
			t.Fatalf("with B draining, new credentials list %v, want C and A only", got)
		}
		// A new Allocate on B is sent to the pool: never to B itself.
		relaysView.Poll(ctx)
		if alt := alternateOf(t, b.addr); alt != c.addr {
			t.Fatalf("draining B redirects to %s (%s), want C, the least loaded", alt, name[alt])
		}
		if !call.waitFor(func() bool { return call.afterDrain.Load() >= 50 }) {
			t.Fatalf("after the drain: %d packets echoed, then: %v", call.afterDrain.Load(), call.err)
		}
		call.halt()
		if call.err != nil {
			t.Fatalf("live call on B: %v", call.err)
		}
		if n := b.redirects(t, metrics.RedirectDraining); n != 1 {
			t.Errorf("B counted %v redirects for draining, want 1", n)
		}
	})

	t.Run("overloaded relay redirects, the probe follows", func(t *testing.T) {
		relaysView.Poll(ctx)
		// A's score is 0.10; C's 0. Threshold 0.05: A is over, C is not.
		a.threshold.Store(0.05)
		if alt := alternateOf(t, a.addr); alt != c.addr {
			t.Fatalf("overloaded A redirects to %s (%s), want C", alt, name[alt])
		}
		// C below its own (unset) threshold takes the Allocate: no second redirect.
		if res := rawAllocate(t, c.addr); errorCode(res) != stun.CodeUnauthorized {
			t.Fatalf("Allocate on C: %v, want the 401 challenge", res)
		}
		cfg := avprobe.Config{
			URLs:            mustURLs(t, "turn:"+a.addr+"?transport=udp"),
			Credentials:     avprobe.Credentials{Username: cred.Username, Password: cred.Password},
			Timeout:         5 * time.Second,
			IncludeLoopback: true,
			Logger:          quietLogger(),
		}
		rep, err := avprobe.Check(ctx, cfg, avprobe.CheckConfig{Count: 20, Size: 200})
		if err != nil {
			t.Fatalf("probe through overloaded A: %v", err)
		}
		if len(rep.Redirects) != 1 || rep.Redirects[0].To != "turn:"+c.addr+"?transport=udp" {
			t.Fatalf("probe redirects %+v, want one, A to C", rep.Redirects)
		}
		if p := rep.Local.Port; rep.Local.Type != "relay" || p < int(c.min) || p > int(c.max) {
			t.Fatalf("probe's relay candidate %s port %d, want one of C's ports %d-%d", rep.Local.Type, p, c.min, c.max)
		}
		if n := a.redirects(t, metrics.RedirectOverloaded); n < 2 {
			t.Errorf("A counted %v redirects for load, want at least 2 (the raw Allocate and the probe's)", n)
		}

		t.Run("never to a relay over the threshold", func(t *testing.T) {
			c.threshold.Store(0.05)
			defer c.threshold.Store(0.0)
			// Eight allocations push C to 0.08 (at least: the probe's ports may still rest).
			for i := 0; i < 8; i++ {
				conn, err := turnClient(t, c.addr, cred.Username, cred.Password).Allocate()
				if err != nil {
					t.Fatalf("allocation %d on C: %v", i, err)
				}
				t.Cleanup(func() { conn.Close() })
			}
			relaysView.Poll(ctx)
			// A and C both over 0.05, B draining: A takes the Allocate itself.
			if res := rawAllocate(t, a.addr); errorCode(res) != stun.CodeUnauthorized {
				t.Fatalf("Allocate on A with no member below the threshold: %v, want the 401 challenge", res)
			}
		})
	})

	t.Run("relay that stops answering leaves after FailAfter polls", func(t *testing.T) {
		before := listed(t)
		c.load.Close()
		if got := listed(t); !slices.Equal(got, before) {
			t.Fatalf("after one failed poll: %v, want %v unchanged", got, before)
		}
		if got := listed(t); slices.Contains(got, "C") {
			t.Fatalf("after %d failed polls: %v, want C gone", avpool.DefaultFailAfter, got)
		}
	})
}

// alternateOf sends a raw Allocate to server and returns the ALTERNATE-SERVER of its 300
// answer.
func alternateOf(t *testing.T, server string) string {
	t.Helper()
	res := rawAllocate(t, server)
	var as stun.AlternateServer
	if code := errorCode(res); code != stun.CodeTryAlternate {
		t.Fatalf("Allocate on %s: error %d, want 300 (Try Alternate)", server, code)
	}
	if err := as.GetFrom(res); err != nil {
		t.Fatalf("300 without ALTERNATE-SERVER: %v", err)
	}
	return net.JoinHostPort(as.IP.String(), strconv.Itoa(as.Port))
}

func errorCode(m *stun.Message) stun.ErrorCode {
	var code stun.ErrorCodeAttribute
	if code.GetFrom(m) != nil {
		return 0
	}
	return code.Code
}

func mustURLs(t *testing.T, raw ...string) []*stun.URI {
	t.Helper()
	us, err := avprobe.ParseURLs(raw, avprobe.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	return us
}
