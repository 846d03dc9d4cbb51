package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeRelay serves a load document the test changes.
type fakeRelay struct {
	mu   sync.Mutex
	load Load
	srv  *httptest.Server
}

func newFakeRelay(t *testing.T, name, zone string, port int) *fakeRelay {
	t.Helper()
	f := &fakeRelay{load: Load{Instance: name, Zone: zone, Healthy: true, PortsTotal: 100, PortsFree: 100,
		Relays: []Endpoint{
			{Location: "internet", HostName: name + ".example.com", UDPPort: 3478, TCPPort: 443},
			{Location: "intranet", HostName: name + ".corp", UDPPort: 3478},
		},
		Alternates: []string{"192.0.2." + strconv.Itoa(port) + ":3478", "[2001:db8::" + strconv.Itoa(port) + "]:3478"}}}
	f.srv = httptest.NewServer(Handler(func() Load { f.mu.Lock(); defer f.mu.Unlock(); return f.load }))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRelay) set(change func(*Load)) { f.mu.Lock(); change(&f.load); f.mu.Unlock() }
func (f *fakeRelay) url() string            { return f.srv.URL + "/load" }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestMonitor(t *testing.T, cfg MonitorConfig) *Monitor {
	t.Helper()
	cfg.Interval, cfg.Timeout, cfg.Logger = time.Hour, 2*time.Second, quiet()
	m, err := NewMonitor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hosts returns the internet host names Relays lists, in order.
func hosts(m *Monitor, zone string) []string {
	var out []string
	for _, r := range m.Relays("internet", zone) {
		if r.Location == "internet" {
			out = append(out, r.HostName[:1])
		}
	}
	return out
}

func TestMonitorOrdersLeastLoadedFirst(t *testing.T) {
	a, b, c := newFakeRelay(t, "a", "", 1), newFakeRelay(t, "b", "", 2), newFakeRelay(t, "c", "", 3)
	m := newTestMonitor(t, MonitorConfig{URLs: []string{a.url(), b.url(), c.url()}})
	ctx := context.Background()
	if got := m.Relays("", ""); got != nil {
		t.Fatalf("before the first poll: %v, want nothing", got)
	}
	a.set(func(l *Load) { l.PortsFree = 80 })
	m.Poll(ctx)
	first := hosts(m, "")
	if len(first) != 3 || first[2] != "a" {
		t.Fatalf("a loaded: order %v, want a last", first)
	}

	t.Run("hysteresis keeps the order for small differences", func(t *testing.T) {
		x, y := first[0], first[1]
		byName := map[string]*fakeRelay{"a": a, "b": b, "c": c}
		byName[x].set(func(l *Load) { l.PortsFree = 97 }) // 0.03 more than y: within the margin
		m.Poll(ctx)
		if got := hosts(m, ""); !slices.Equal(got, first) {
			t.Fatalf("order %v, want %v kept", got, first)
		}
		byName[x].set(func(l *Load) { l.PortsFree = 90 }) // 0.10 more: past it
		m.Poll(ctx)
		if got := hosts(m, ""); !slices.Equal(got, []string{y, x, "a"}) {
			t.Fatalf("order %v, want [%s %s a]", got, y, x)
		}
	})

	t.Run("locations grouped, asked one first", func(t *testing.T) {
		rs := m.Relays("intranet", "")
		if len(rs) != 6 || rs[0].Location != "intranet" || rs[2].Location != "intranet" || rs[3].Location != "internet" {
			t.Fatalf("intranet first: %+v", rs)
		}
	})

	t.Run("draining leaves at once", func(t *testing.T) {
		b.set(func(l *Load) { l.Draining = true })
		m.Poll(ctx)
		if got := hosts(m, ""); slices.Contains(got, "b") {
			t.Fatalf("draining b still listed: %v", got)
		}
		b.set(func(l *Load) { l.Draining = false })
		m.Poll(ctx)
		if got := hosts(m, ""); !slices.Contains(got, "b") {
			t.Fatalf("b back from draining not listed: %v", got)
		}
	})

	t.Run("silent member leaves after FailAfter polls", func(t *testing.T) {
		c.srv.Close()
		m.Poll(ctx)
		if got := hosts(m, ""); !slices.Contains(got, "c") {
			t.Fatalf("after one failed poll: %v, want c still listed", got)
		}
		m.Poll(ctx)
		if got := hosts(m, ""); slices.Contains(got, "c") || len(got) != 2 {
			t.Fatalf("after two failed polls: %v, want c gone", got)
		}
		for _, st := range m.Members() {
			if st.URL == c.url() && (st.Listed || st.Fails != 2 || st.Score != 1) {
				t.Fatalf("c believed %+v", st)
			}
		}
		pm := m.PoolMembers()
		if len(pm) != 3 {
			t.Fatalf("PoolMembers: %d, want 3", len(pm))
		}
	})
}

func TestMonitorZones(t *testing.T) {
	a, b := newFakeRelay(t, "a", "zone-1", 1), newFakeRelay(t, "b", "zone-2", 2)
	b.set(func(l *Load) { l.PortsFree = 50 })
	m := newTestMonitor(t, MonitorConfig{URLs: []string{a.url(), b.url()}, Zone: "zone-2"})
	m.Poll(context.Background())
	if got := hosts(m, ""); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("configured zone-2 first: %v", got)
	}
	if got := hosts(m, "zone-1"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("asked zone-1: %v", got)
	}
	if got := hosts(m, "zone-9"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("unknown zone: least loaded first: %v", got)
	}
}

func TestMonitorAlternate(t *testing.T) {
	a, b, c := newFakeRelay(t, "a", "", 1), newFakeRelay(t, "b", "", 2), newFakeRelay(t, "c", "", 3)
	m := newTestMonitor(t, MonitorConfig{URLs: []string{a.url(), b.url(), c.url()}})
	a.set(func(l *Load) { l.PortsFree = 10 })
	b.set(func(l *Load) { l.PortsFree = 60 })
	c.set(func(l *Load) { l.PortsFree = 20 })
	m.Poll(context.Background())
	v4, v6 := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::99")
	for _, tc := range []struct {
		name  string
		self  string
		limit float64
		from  netip.Addr
		want  string // "" none
	}{
		{"best other, v4", "a", 0.5, v4, "192.0.2.2:3478"},
		{"best other, v6", "a", 0.5, v6, "[2001:db8::2]:3478"},
		{"never itself", "b", 0.9, v4, "192.0.2.3:3478"},
		{"never one over the limit", "b", 0.4, v4, ""},
		{"none below", "a", 0.3, v4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alt, ok := m.Alternate(tc.self, tc.limit, tc.from)
			if tc.want == "" {
				if ok {
					t.Fatalf("Alternate = %v, want none", alt)
				}
				return
			}
			if !ok || alt.String() != tc.want {
				t.Fatalf("Alternate = %v, %v; want %s", alt, ok, tc.want)
			}
		})
	}
}

// fakeResolver answers the SRV and host lookups of discovery.
type fakeResolver struct {
	mu    sync.Mutex
	srv   []*net.SRV
	hosts []string
	err   error
}

func (r *fakeResolver) LookupSRV(_ context.Context, _, _, _ string) (string, []*net.SRV, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "", r.srv, r.err
}

func (r *fakeResolver) LookupHost(context.Context, string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hosts, r.err
}

func TestMonitorDiscovery(t *testing.T) {
	a, b := newFakeRelay(t, "a", "", 1), newFakeRelay(t, "b", "", 2)
	port := func(f *fakeRelay) uint16 {
		u, _ := url.Parse(f.srv.URL)
		p, _ := strconv.Atoi(u.Port())
		return uint16(p)
	}
	res := &fakeResolver{srv: []*net.SRV{{Target: "127.0.0.1.", Port: port(a)}, {Target: "127.0.0.1.", Port: port(b)}}}
	m := newTestMonitor(t, MonitorConfig{Discover: "_metrics._tcp.avedge-relay.avedge.svc.cluster.local", Resolver: res})
	ctx := context.Background()
	m.Poll(ctx)
	if got := hosts(m, ""); len(got) != 2 {
		t.Fatalf("discovered %v, want a and b", got)
	}
	res.mu.Lock()
	res.err = errors.New("SERVFAIL")
	res.mu.Unlock()
	m.Poll(ctx)
	if got := hosts(m, ""); len(got) != 2 {
		t.Fatalf("lookup failed: %v, want the members found last", got)
	}
	res.mu.Lock()
	res.err, res.srv = nil, res.srv[:1]
	res.mu.Unlock()
	m.Poll(ctx)
	if got := hosts(m, ""); len(got) != 1 || len(m.Members()) != 1 {
		t.Fatalf("b gone from DNS: %v, members %d", got, len(m.Members()))
	}

	t.Run("A records", func(t *testing.T) {
		res := &fakeResolver{hosts: []string{"127.0.0.1"}}
		m := newTestMonitor(t, MonitorConfig{Discover: "avedge-relay.avedge.svc:" + strconv.Itoa(int(port(b))), Resolver: res})
		m.Poll(ctx)
		if got := hosts(m, ""); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("discovered %v, want b", got)
		}
	})

	t.Run("same relay at two URLs listed once", func(t *testing.T) {
		res := &fakeResolver{hosts: []string{"127.0.0.1", "localhost"}}
		m := newTestMonitor(t, MonitorConfig{Discover: "avedge-relay:" + strconv.Itoa(int(port(a))), Resolver: res})
		m.Poll(ctx)
		if got := hosts(m, ""); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("listed %v, want a once", got)
		}
	})
}

func TestMonitorConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  MonitorConfig
	}{
		{"nothing to poll", MonitorConfig{}},
		{"bad URL", MonitorConfig{URLs: []string{"10.0.0.1:9641"}}},
		{"bad discover", MonitorConfig{Discover: "avedge-relay"}},
		{"timeout not below interval", MonitorConfig{URLs: []string{"http://a/load"}, Interval: time.Second, Timeout: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewMonitor(tc.cfg); err == nil {
				t.Fatal("NewMonitor accepted it")
			}
		})
	}
}
