package pool

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// Defaults of MonitorConfig.
const (
	DefaultInterval   = 5 * time.Second
	DefaultTimeout    = 2 * time.Second
	DefaultFailAfter  = 2
	DefaultHysteresis = 0.05
)

// Resolver is the part of *net.Resolver a Monitor uses for discovery.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// MonitorConfig configures a Monitor. Every zero value is documented.
type MonitorConfig struct {
	// URLs are load documents polled at every round (a static pool), e.g.
	// "http://10.0.0.1:9641/load".
	URLs []string
	// Discover, when set, is looked up at every round and each address found is polled at
	// http://addr:port/load:
	//   - "_service._proto.name" (e.g. "_metrics._tcp.avedge-relay.avedge.svc.cluster.local"):
	//     the SRV records of a Kubernetes headless Service, each target at its port;
	//   - "host:port": every A and AAAA record of host, at port.
	// A lookup that fails keeps the addresses found last (their polls decide).
	Discover string
	// Resolver looks Discover up; nil: net.DefaultResolver.
	Resolver Resolver
	// Interval is the time between rounds (Run); 0: DefaultInterval.
	Interval time.Duration
	// Timeout bounds each member's poll; 0: DefaultTimeout. Must be below Interval.
	Timeout time.Duration
	// FailAfter is the number of consecutive failed polls (no answer, an error status, a
	// document that does not parse) after which a member leaves the lists; 0:
	// DefaultFailAfter. A member whose document says it is not healthy or drains leaves at
	// once. So a relay that stops answering is listed at most FailAfter×Interval+Timeout
	// after its last good answer.
	FailAfter int
	// Hysteresis is the score margin by which a member must beat the one listed before it to
	// move ahead of it; 0: DefaultHysteresis; negative: none.
	Hysteresis float64
	// Zone is the zone label whose members are listed first when the caller names none; "":
	// no preference.
	Zone string
	// Client fetches the documents; nil: a client with no proxy and Timeout.
	Client *http.Client
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// Monitor polls the pool's load documents and keeps the members in order, least loaded
// first. Relays, Alternate and Members read an immutable view lock-free; Poll and Run
// replace it.
type Monitor struct {
	cfg MonitorConfig // Static after construction.
	log *slog.Logger  // Static after construction.

	view atomic.Pointer[view] // Written by poll (under pollMu), read by anyone.

	pollMu     sync.Mutex         // one round at a time
	members    map[string]*member // by URL. Guarded by pollMu.
	order      []string           // URLs of listed members, best first. Guarded by pollMu.
	discovered []string           // URLs found by Discover last time. Guarded by pollMu.
}

// member is what a Monitor knows of one URL.
type member struct {
	url   string
	load  Load // the last good document
	good  bool // load was read at least once
	fails int  // consecutive failed polls
	err   error
}

// MemberState is what the Monitor believes of one member.
type MemberState struct {
	URL    string
	Load   Load    // the last good document (zero if none)
	Listed bool    // healthy, not draining, answering
	Fails  int     // consecutive failed polls
	Score  float64 // Load.Score(); 1 when not listed
	Rank   int     // 1 for the first listed, 0 when not listed
}

// view is one round's outcome. Immutable.
type view struct {
	listed []MemberState // best first
	all    []MemberState // every member, by URL
}

// NewMonitor checks cfg and returns a Monitor that knows nothing yet: call Poll (or Run).
func NewMonitor(cfg MonitorConfig) (*Monitor, error) {
	if len(cfg.URLs) == 0 && cfg.Discover == "" {
		return nil, fmt.Errorf("pool: monitor without URLs or Discover: %w", ErrBadConfig)
	}
	for _, u := range cfg.URLs {
		if err := checkURL(u); err != nil {
			return nil, err
		}
	}
	if cfg.Discover != "" {
		if _, _, _, err := parseDiscover(cfg.Discover); err != nil {
			return nil, err
		}
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FailAfter == 0 {
		cfg.FailAfter = DefaultFailAfter
	}
	if cfg.Hysteresis == 0 {
		cfg.Hysteresis = DefaultHysteresis
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.Timeout >= cfg.Interval || cfg.FailAfter < 0 || cfg.Hysteresis >= 1 {
		return nil, fmt.Errorf("pool: interval %v timeout %v fail-after %d hysteresis %v: %w",
			cfg.Interval, cfg.Timeout, cfg.FailAfter, cfg.Hysteresis, ErrBadConfig)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 2 * cfg.Interval}}
	}
	m := &Monitor{cfg: cfg, log: cfg.Logger, members: map[string]*member{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.view.Store(&view{})
	return m, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("pool: load URL %q: want http://host:port/load: %w", s, ErrBadMember)
	}
	return nil
}

// parseDiscover splits Discover into an SRV query or a host and port.
func parseDiscover(s string) (srv bool, host string, port uint16, err error) {
	if strings.HasPrefix(s, "_") {
		return true, s, 0, nil
	}
	h, p, err := net.SplitHostPort(s)
	n, perr := strconv.ParseUint(p, 10, 16)
	if err != nil || perr != nil || h == "" || n == 0 {
		return false, "", 0, fmt.Errorf("pool: discover %q: want _service._proto.name or host:port: %w", s, ErrBadMember)
	}
	return false, h, uint16(n), nil
}

// Interval is the time between Run's rounds.
func (m *Monitor) Interval() time.Duration { return m.cfg.Interval }

// Run polls once at once and then every Interval until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll runs one round: discovery, then every member's document fetched in parallel (each
// bounded by Timeout), then the order recomputed and published. Rounds do not overlap.
func (m *Monitor) Poll(ctx context.Context) {
	m.pollMu.Lock()
	defer m.pollMu.Unlock()
	urls := m.targetsLocked(ctx)
	type result struct {
		load Load
		err  error
	}
	results := make([]result, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { results[i].load, results[i].err = m.fetch(ctx, u) })
	}
	wg.Wait()
	seen := make(map[string]bool, len(urls))
	for i, u := range urls {
		seen[u] = true
		mb := m.members[u]
		if mb == nil {
			mb = &member{url: u}
			m.members[u] = mb
		}
		if err := results[i].err; err != nil {
			mb.fails++
			if mb.fails == m.cfg.FailAfter {
				m.log.Warn("pool member stopped answering; unlisted", "url", u, "fails", mb.fails, "err", err)
			}
			mb.err = err
			continue
		}
		mb.load, mb.good, mb.fails, mb.err = results[i].load, true, 0, nil
	}
	for u := range m.members {
		if !seen[u] {
			delete(m.members, u)
		}
	}
	m.rankLocked()
}

// targetsLocked returns the URLs to poll this round: the static ones and those discovered.
func (m *Monitor) targetsLocked(ctx context.Context) []string {
	urls := slices.Clone(m.cfg.URLs)
	if m.cfg.Discover != "" {
		found, err := m.discover(ctx)
		if err != nil {
			m.log.Warn("pool discovery failed; polling the members found last", "name", m.cfg.Discover, "err", err)
		} else {
			m.discovered = found
		}
		urls = append(urls, m.discovered...)
	}
	slices.Sort(urls)
	return slices.Compact(urls)
}

func (m *Monitor) discover(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	isSRV, host, port, _ := parseDiscover(m.cfg.Discover)
	var out []string
	if isSRV {
		_, srvs, err := m.cfg.Resolver.LookupSRV(ctx, "", "", host)
		if err != nil {
			return nil, fmt.Errorf("pool: SRV %s: %w", host, err)
		}
		for _, s := range srvs {
			out = append(out, "http://"+net.JoinHostPort(strings.TrimSuffix(s.Target, "."), strconv.Itoa(int(s.Port)))+"/load")
		}
		return out, nil
	}
	addrs, err := m.cfg.Resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("pool: lookup %s: %w", host, err)
	}
	for _, a := range addrs {
		out = append(out, "http://"+net.JoinHostPort(a, strconv.Itoa(int(port)))+"/load")
	}
	return out, nil
}

func (m *Monitor) fetch(ctx context.Context, u string) (Load, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Load{}, fmt.Errorf("pool: %s: %w", u, err)
	}
	res, err := m.cfg.Client.Do(req)
	if err != nil {
		return Load{}, fmt.Errorf("pool: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return Load{}, fmt.Errorf("pool: %s: %s", u, res.Status)
	}
	l, err := ParseLoad(res.Body)
	if err != nil {
		return Load{}, fmt.Errorf("%w (from %s)", err, u)
	}
	return l, nil
}

// listed reports whether mb belongs in the lists: a good document within FailAfter polls
// that says healthy and not draining.
func (m *Monitor) listed(mb *member) bool {
	return mb.good && mb.fails < m.cfg.FailAfter && mb.load.Healthy && !mb.load.Draining
}

// rankLocked recomputes the order and publishes a new view. The members listed last round
// keep their order, new ones follow by score; then a member moves ahead of the one before it
// only when its score is lower by more than Hysteresis (so two relays a hair apart do not
// swap places at every round). The same relay reached at two URLs (its instance ID) is
// listed once.
func (m *Monitor) rankLocked() {
	prev := make(map[string]int, len(m.order))
	for i, u := range m.order {
		prev[u] = i
	}
	var order []string
	instances := map[string]bool{}
	for _, u := range m.sortedURLs() {
		mb := m.members[u]
		if !m.listed(mb) || instances[mb.load.Instance] {
			continue
		}
		instances[mb.load.Instance] = true
		order = append(order, u)
	}
	score := func(u string) float64 { return m.members[u].load.Score() }
	slices.SortStableFunc(order, func(a, b string) int {
		pa, oka := prev[a]
		pb, okb := prev[b]
		switch {
		case oka && okb:
			return cmp.Compare(pa, pb)
		case oka:
			return -1
		case okb:
			return 1
		}
		return cmp.Compare(score(a), score(b))
	})
	h := max(m.cfg.Hysteresis, 0)
	for swapped, passes := true, 0; swapped && passes < len(order); passes++ {
		swapped = false
		for i := 1; i < len(order); i++ {
			if score(order[i]) < score(order[i-1])-h {
				order[i], order[i-1] = order[i-1], order[i]
				swapped = true
			}
		}
	}
	m.order = order
	v := &view{}
	rank := make(map[string]int, len(order))
	for i, u := range order {
		rank[u] = i + 1
	}
	for _, u := range m.sortedURLs() {
		mb := m.members[u]
		st := MemberState{URL: u, Load: mb.load, Fails: mb.fails, Score: 1, Rank: rank[u]}
		if st.Rank > 0 {
			st.Listed, st.Score = true, mb.load.Score()
		}
		v.all = append(v.all, st)
	}
	for _, u := range order {
		v.listed = append(v.listed, v.all[slices.IndexFunc(v.all, func(s MemberState) bool { return s.URL == u })])
	}
	m.view.Store(v)
}

func (m *Monitor) sortedURLs() []string {
	urls := make([]string, 0, len(m.members))
	for u := range m.members {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	return urls
}

// Members returns what the Monitor believes of every member it polls, by URL.
func (m *Monitor) Members() []MemberState {
	return slices.Clone(m.view.Load().all)
}

// inZone returns the listed members in order, those of zone first (zone "": the
// configured Zone; both "": no preference).
func (m *Monitor) inZone(zone string) []MemberState {
	listed := m.view.Load().listed
	if zone == "" {
		zone = m.cfg.Zone
	}
	if zone == "" {
		return listed
	}
	out := make([]MemberState, 0, len(listed))
	for _, st := range listed {
		if st.Load.Zone == zone {
			out = append(out, st)
		}
	}
	for _, st := range listed {
		if st.Load.Zone != zone {
			out = append(out, st)
		}
	}
	return out
}

// Relays returns the relays to list to a client, best first: only members that answer, are
// healthy and do not drain; those of zone first ("" : the configured Zone); the endpoints of
// location first ("": in each relay's own order), each location's least loaded first. nil
// when no member is listed.
func (m *Monitor) Relays(location, zone string) []auth.RelayInfo {
	var first, rest []auth.RelayInfo
	for _, st := range m.inZone(zone) {
		for _, e := range st.Load.Relays {
			ri := auth.RelayInfo{Location: e.Location, HostName: e.HostName, UDPPort: e.UDPPort, TCPPort: e.TCPPort}
			if location == "" || e.Location == location {
				first = append(first, ri)
			} else {
				rest = append(rest, ri)
			}
		}
	}
	return append(first, rest...)
}

// Alternate returns the address to name in ALTERNATE-SERVER for a client of the family of
// client: that of the best listed member other than the relay whose instance is self, whose
// score is below limit (never a relay that is itself over the threshold), in the
// configured Zone first. ok is false when there is none.
func (m *Monitor) Alternate(self string, limit float64, client netip.Addr) (alt netip.AddrPort, ok bool) {
	v4 := client.Unmap().Is4()
	for _, st := range m.inZone("") {
		if st.Load.Instance == self || st.Score >= limit {
			continue
		}
		for _, a := range st.Load.Alternates {
			ap, err := netip.ParseAddrPort(a)
			if err == nil && ap.Addr().Unmap().Is4() == v4 {
				return ap, true
			}
		}
	}
	return netip.AddrPort{}, false
}

// PoolMembers reports the members for the metrics collector (metrics.PoolSource).
func (m *Monitor) PoolMembers() []metrics.PoolMember {
	all := m.view.Load().all
	out := make([]metrics.PoolMember, len(all))
	for i, st := range all {
		out[i] = metrics.PoolMember{
			Member: st.URL, Listed: st.Listed, Draining: st.Load.Draining, Healthy: st.Load.Healthy && st.Fails < m.cfg.FailAfter,
			Score: st.Score, Rank: st.Rank, Allocations: st.Load.Allocations, Fails: st.Fails,
		}
	}
	return out
}
