package metrics

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixedOptions keep the golden exposition independent of the toolchain.
var fixedOptions = Options{Version: "1.2.3", PionVersion: "v5.1.3", GoVersion: "go1.26.0"}

func newTestMetrics(t testing.TB, opts Options) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m, reg
}

// fullSnapshot gives every field a distinct value so that a swapped label
// or index shows in the golden file.
func fullSnapshot(s *Snapshot) {
	s.Allocations[TransportUDP][FamilyIPv4] = 11
	s.Allocations[TransportUDP][FamilyIPv6] = 12
	s.Allocations[TransportTCP][FamilyIPv4] = 21
	s.Allocations[TransportTCP][FamilyIPv6] = 22
	s.Allocations[TransportTLS][FamilyIPv4] = 31
	s.Allocations[TransportTLS][FamilyIPv6] = 32
	s.Permissions = 40
	s.Channels = 41
	s.Ports = PortStats{Capacity: 10000, Held: 135, Reserved: 2, Quarantined: 17}
	s.Traffic[ClientToPeer][PathChannel] = Counter{Packets: 7, Bytes: 1120}
	s.Traffic[ClientToPeer][PathIndication] = Counter{Packets: 3, Bytes: 300}
	s.Traffic[PeerToClient][PathChannel] = Counter{Packets: 9, Bytes: 1440}
	s.Traffic[PeerToClient][PathIndication] = Counter{Packets: 5, Bytes: 500}
	s.Drops[DropNoPermission] = 4
	s.Drops[DropTooLarge] = 1
	s.Drops[LabelOther] = 2
	s.Drops["made_up_reason"] = 6 // folds into other: 8
	s.BindingRequests = 99
	s.Draining = true
	s.TCPRelay = TCPRelayStats{
		Conns: 51, BindTimeouts: 52, IdleCloses: 53,
		LimitRefused:  [NumTCPLimits]uint64{61, 62, 63},
		PolicyRefused: [NumTCPPolicyStages]uint64{71, 72, 73},
	}
	s.ProxyRefused = [NumProxyRefusals]uint64{81, 82, 83, 84}
}

func TestExpositionGolden(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	m.SetSource(SourceFunc(fullSnapshot))
	m.AllocationAttempt(AttemptOK)
	m.AllocationAttempt(AttemptOK)
	m.AllocationAttempt(AttemptCapacity)
	m.AllocationAttempt("alice@example.com") // other
	m.AllocationEnded(5 * time.Second)
	m.AllocationEnded(45 * time.Minute)
	m.AllocationEnded(9 * time.Hour)
	m.AuthFailure(AuthExpired)
	m.AuthFailure("10.0.0.1:5000") // other
	m.CredentialRequest(CredentialAPIMRAS, CredentialOK)
	m.CredentialRequest(CredentialAPIJSON, CredentialBadRequest)
	m.CredentialRequest("soap", "teapot") // other, other

	golden := filepath.Join("testdata", "exposition.golden")
	if *update {
		// testutil.GatherAndFormat keeps only the names it is given, so
		// format every family here.
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		var got bytes.Buffer
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&got, mf); err != nil {
				t.Fatalf("format %s: %v", mf.GetName(), err)
			}
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatalf("write golden: %v", err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
		t.Fatalf("exposition differs from %s (run with -update if intended):\n%v", golden, err)
	}
}

// sample returns the value of the one series of family name whose labels
// include want, failing the test unless exactly one matches.
func sample(t testing.TB, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var found []float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				found = append(found, m.GetCounter().GetValue())
			case m.Gauge != nil:
				found = append(found, m.GetGauge().GetValue())
			case m.Histogram != nil:
				found = append(found, float64(m.GetHistogram().GetSampleCount()))
			}
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1", name, want, len(found))
	}
	return found[0]
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	matched := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			matched++
		}
	}
	return matched == len(want)
}

func TestSourceValuesExposedExactly(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	m.SetSource(SourceFunc(fullSnapshot))
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"channel packets client to peer", "avedge_relayed_packets_total", map[string]string{"direction": "client_to_peer", "path": "channel"}, 7},
		{"channel bytes client to peer", "avedge_relayed_bytes_total", map[string]string{"direction": "client_to_peer", "path": "channel"}, 1120},
		{"indication packets peer to client", "avedge_relayed_packets_total", map[string]string{"direction": "peer_to_client", "path": "indication"}, 5},
		{"channel bytes peer to client", "avedge_relayed_bytes_total", map[string]string{"direction": "peer_to_client", "path": "channel"}, 1440},
		{"tls ipv6 allocations", "avedge_allocations_active", map[string]string{"transport": "tls", "family": "ipv6"}, 32},
		{"tcp ipv4 allocations", "avedge_allocations_active", map[string]string{"transport": "tcp", "family": "ipv4"}, 21},
		{"permissions", "avedge_permissions_active", nil, 40},
		{"channels", "avedge_channels_active", nil, 41},
		{"port capacity", "avedge_relay_ports_capacity", nil, 10000},
		{"ports held", "avedge_relay_ports", map[string]string{"state": "held"}, 135},
		{"ports reserved", "avedge_relay_ports", map[string]string{"state": "reserved"}, 2},
		{"ports quarantined", "avedge_relay_ports", map[string]string{"state": "quarantined"}, 17},
		{"known drop reason", "avedge_dropped_packets_total", map[string]string{"reason": "no_permission"}, 4},
		{"unset drop reason reads 0", "avedge_dropped_packets_total", map[string]string{"reason": "no_channel"}, 0},
		{"unknown drop reasons fold into other", "avedge_dropped_packets_total", map[string]string{"reason": "other"}, 8},
		{"binding requests", "avedge_stun_binding_requests_total", nil, 99},
		{"draining", "avedge_draining", nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sample(t, reg, tc.metric, tc.labels); got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
	t.Run("unknown drop reason has no series of its own", func(t *testing.T) {
		if n, err := testutil.GatherAndCount(reg, "avedge_dropped_packets_total"); err != nil || n != len(dropReasons) {
			t.Errorf("drop series = %d, %v; want %d", n, err, len(dropReasons))
		}
	})
}

func TestLargeCountersKeepPrecisionToTwoToThe53(t *testing.T) {
	// A float64 holds integers exactly up to 2^53: ~9 PB of bytes.
	const big = 1<<53 - 1
	m, reg := newTestMetrics(t, fixedOptions)
	m.SetSource(SourceFunc(func(s *Snapshot) {
		s.Traffic[PeerToClient][PathChannel].Bytes = big
	}))
	got := sample(t, reg, "avedge_relayed_bytes_total", map[string]string{"direction": "peer_to_client", "path": "channel"})
	if got != big {
		t.Fatalf("bytes = %v, want %v", got, float64(big))
	}
}

func TestNoSourceReadsZero(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	check := func(t *testing.T) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
				if mf.GetName() == "avedge_build_info" {
					if v != 1 {
						t.Errorf("avedge_build_info = %v, want 1", v)
					}
					continue
				}
				if v != 0 {
					t.Errorf("%s%v = %v, want 0", mf.GetName(), mt.GetLabel(), v)
				}
			}
		}
	}
	t.Run("before SetSource", check)
	m.SetSource(SourceFunc(fullSnapshot))
	m.SetSource(nil)
	t.Run("after SetSource(nil)", check)
}

func TestSnapshotIsResetEachScrape(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	var calls int
	m.SetSource(SourceFunc(func(s *Snapshot) {
		calls++
		if s.Drops == nil {
			t.Fatal("Snapshot.Drops is nil")
		}
		if len(s.Drops) != 0 || s.Permissions != 0 || s.Draining || s.Traffic != ([NumDirections][NumPaths]Counter{}) {
			t.Errorf("scrape %d: snapshot not zeroed: %+v", calls, *s)
		}
		if calls == 1 {
			fullSnapshot(s)
		}
	}))
	first := sample(t, reg, "avedge_dropped_packets_total", map[string]string{"reason": "no_permission"})
	second := sample(t, reg, "avedge_dropped_packets_total", map[string]string{"reason": "no_permission"})
	if first != 4 || second != 0 {
		t.Fatalf("drops across scrapes = %v then %v, want 4 then 0 (the second source reported none)", first, second)
	}
}

func TestLabelValuesOutsideTheSetCountAsOther(t *testing.T) {
	tests := []struct {
		name   string
		event  func(m *Metrics)
		metric string
		labels map[string]string
	}{
		{"attempt known", func(m *Metrics) { m.AllocationAttempt(AttemptQuota) }, "avedge_allocation_attempts_total", map[string]string{"result": "quota"}},
		{"attempt unknown", func(m *Metrics) { m.AllocationAttempt("401 Unauthorized") }, "avedge_allocation_attempts_total", map[string]string{"result": "other"}},
		{"attempt empty", func(m *Metrics) { m.AllocationAttempt("") }, "avedge_allocation_attempts_total", map[string]string{"result": "other"}},
		{"attempt case differs", func(m *Metrics) { m.AllocationAttempt("OK") }, "avedge_allocation_attempts_total", map[string]string{"result": "other"}},
		{"auth known", func(m *Metrics) { m.AuthFailure(AuthUnknownKey) }, "avedge_auth_failures_total", map[string]string{"reason": "unknown_key"}},
		{"auth user name", func(m *Metrics) { m.AuthFailure("1700000000:alice") }, "avedge_auth_failures_total", map[string]string{"reason": "other"}},
		{"credential known", func(m *Metrics) { m.CredentialRequest(CredentialAPIJSON, CredentialUnauthorized) }, "avedge_credential_requests_total", map[string]string{"api": "json", "result": "unauthorized"}},
		{"credential unknown api", func(m *Metrics) { m.CredentialRequest("grpc", CredentialOK) }, "avedge_credential_requests_total", map[string]string{"api": "other", "result": "ok"}},
		{"credential unknown result", func(m *Metrics) { m.CredentialRequest(CredentialAPIMRAS, "500") }, "avedge_credential_requests_total", map[string]string{"api": "mras", "result": "other"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newTestMetrics(t, fixedOptions)
			before, err := testutil.GatherAndCount(reg)
			if err != nil {
				t.Fatal(err)
			}
			tc.event(m)
			if got := sample(t, reg, tc.metric, tc.labels); got != 1 {
				t.Errorf("%s%v = %v, want 1", tc.metric, tc.labels, got)
			}
			after, err := testutil.GatherAndCount(reg)
			if err != nil {
				t.Fatal(err)
			}
			if after != before {
				t.Errorf("series count went from %d to %d: a label value escaped its set", before, after)
			}
		})
	}
}

func TestEventSeriesPreinitialised(t *testing.T) {
	_, reg := newTestMetrics(t, fixedOptions)
	tests := []struct {
		metric string
		want   int
	}{
		{"avedge_allocation_attempts_total", len(attemptResults)},
		{"avedge_auth_failures_total", len(authReasons)},
		{"avedge_credential_requests_total", len(credentialAPIs) * len(credentialResults)},
		{"avedge_allocation_lifetime_seconds", 1},
	}
	for _, tc := range tests {
		t.Run(tc.metric, func(t *testing.T) {
			n, err := testutil.GatherAndCount(reg, tc.metric)
			if err != nil || n != tc.want {
				t.Errorf("series = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
}

func TestAllocationLifetimeBuckets(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		le       float64 // smallest bucket that must hold it
	}{
		{"short", 3 * time.Second, 10},
		{"negative counts as zero", -time.Minute, 10},
		{"on a bound", 30 * time.Second, 30},
		{"call", 25 * time.Minute, 1800},
		{"working day", 8 * time.Hour, 28800},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, reg := newTestMetrics(t, fixedOptions)
			m.AllocationEnded(tc.lifetime)
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != "avedge_allocation_lifetime_seconds" {
					continue
				}
				h := mf.GetMetric()[0].GetHistogram()
				for _, b := range h.GetBucket() {
					want := uint64(0)
					if b.GetUpperBound() >= tc.le {
						want = 1
					}
					if b.GetCumulativeCount() != want {
						t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
					}
				}
				if h.GetSampleSum() < 0 {
					t.Errorf("sum = %v, want >= 0", h.GetSampleSum())
				}
				return
			}
			t.Fatal("avedge_allocation_lifetime_seconds not gathered")
		})
	}
}

func TestNew(t *testing.T) {
	t.Run("nil registerer", func(t *testing.T) {
		if _, err := New(nil, Options{}); !errors.Is(err, ErrNilRegisterer) {
			t.Fatalf("err = %v, want ErrNilRegisterer", err)
		}
	})
	t.Run("twice on one registry", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := New(reg, Options{}); err != nil {
			t.Fatal(err)
		}
		_, err := New(reg, Options{})
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			t.Fatalf("err = %v, want AlreadyRegisteredError", err)
		}
		if !strings.HasPrefix(err.Error(), "metrics: register ") {
			t.Errorf("err = %q, want context prefix", err)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		_, reg := newTestMetrics(t, Options{})
		got := sample(t, reg, "avedge_build_info", map[string]string{"version": "dev", "pion_version": "unknown"})
		if got != 1 {
			t.Fatalf("build info = %v, want 1", got)
		}
	})
}

func TestNilMetricsIgnoresEvents(t *testing.T) {
	var m *Metrics
	m.SetSource(SourceFunc(fullSnapshot))
	m.AllocationAttempt(AttemptOK)
	m.AllocationEnded(time.Minute)
	m.AuthFailure(AuthExpired)
	m.CredentialRequest(CredentialAPIJSON, CredentialOK)
}

func TestConcurrentScrapesAndEvents(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	m.SetSource(SourceFunc(fullSnapshot))
	const workers, rounds = 4, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if w%2 == 0 {
					if _, err := reg.Gather(); err != nil {
						t.Error(err)
						return
					}
				} else {
					m.AllocationAttempt(AttemptOK)
					m.AuthFailure(AuthForged)
				}
			}
		}()
	}
	wg.Wait()
	want := float64(workers / 2 * rounds)
	if got := sample(t, reg, "avedge_allocation_attempts_total", map[string]string{"result": "ok"}); got != want {
		t.Fatalf("attempts ok = %v, want %v", got, want)
	}
}

// TestTLSCertificate: a pair's expiry is exposed once it loads, a refused reload counts a
// failure and leaves the expiry of the pair still served; an unknown pair is "other".
func TestTLSCertificate(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(""), "avedge_tls_certificate_expiry_timestamp_seconds", "avedge_tls_certificate_reload_failures_total"); err != nil {
		t.Fatalf("before any pair: %v", err)
	}
	first, second := time.Unix(1_800_000_000, 0), time.Unix(1_900_000_000, 0)
	m.TLSCertificate(TLSPairTURN, first, nil)
	m.TLSCertificate(TLSPairTURN, time.Time{}, errors.New("key mismatch"))
	m.TLSCertificate(TLSPairCredentialService, first, nil)
	m.TLSCertificate(TLSPairCredentialService, second, nil)
	m.TLSCertificate("metrics", second, errors.New("x"))
	want := `# HELP avedge_tls_certificate_expiry_timestamp_seconds When the TLS certificate being served expires (Unix time), by pair: turn (cert, pkey), credential_service or admin.
# TYPE avedge_tls_certificate_expiry_timestamp_seconds gauge
avedge_tls_certificate_expiry_timestamp_seconds{pair="credential_service"} 1.9e+09
avedge_tls_certificate_expiry_timestamp_seconds{pair="turn"} 1.8e+09
# HELP avedge_tls_certificate_reload_failures_total TLS certificate reloads refused (the current pair kept serving), by pair.
# TYPE avedge_tls_certificate_reload_failures_total counter
avedge_tls_certificate_reload_failures_total{pair="credential_service"} 0
avedge_tls_certificate_reload_failures_total{pair="other"} 1
avedge_tls_certificate_reload_failures_total{pair="turn"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "avedge_tls_certificate_expiry_timestamp_seconds", "avedge_tls_certificate_reload_failures_total"); err != nil {
		t.Fatal(err)
	}
}
