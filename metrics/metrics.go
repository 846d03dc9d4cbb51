package metrics

import (
	"fmt"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options describes the build that [New] reports in avedge_build_info.
type Options struct {
	// Version is the avedge version. Empty means "dev".
	Version string
	// PionVersion is the pion/turn module version, e.g. "v5.1.3", as the
	// caller reads it from runtime/debug.ReadBuildInfo. Empty means "unknown".
	PionVersion string
	// GoVersion is the Go toolchain version. Empty means runtime.Version();
	// tests set it so that golden files do not depend on the toolchain.
	GoVersion string
}

// lifetimeBuckets are the upper bounds of avedge_allocation_lifetime_seconds,
// spaced for calls: from a failed ten-second attempt to an eight-hour
// meeting (the credential lifetime is 480 minutes).
var lifetimeBuckets = []float64{
	10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800,
}

// Metrics holds avedge's collectors. Its methods are safe for concurrent use;
// a nil *Metrics accepts every event and counts nothing.
type Metrics struct {
	// Static after construction; the maps are only read.
	scrape      *collector
	attempts    map[string]prometheus.Counter
	lifetime    prometheus.Histogram
	ended       map[string]prometheus.Counter
	authFails   map[string]prometheus.Counter
	credentials map[string]map[string]prometheus.Counter // api -> result
	redirects   map[string]prometheus.Counter
	tlsExpiry   *prometheus.GaugeVec   // by pair; a child once the pair is loaded
	tlsFailures *prometheus.CounterVec // by pair
}

// New builds avedge's collectors and registers every one on reg. It uses no
// global registry. Every bounded label set of the event counters is
// pre-initialised, so each series appears at 0 before its first event.
func New(reg prometheus.Registerer, opts Options) (*Metrics, error) {
	if reg == nil {
		return nil, ErrNilRegisterer
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.PionVersion == "" {
		opts.PionVersion = "unknown"
	}
	if opts.GoVersion == "" {
		opts.GoVersion = runtime.Version()
	}

	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avedge_allocation_attempts_total",
		Help: "TURN Allocate requests handled, by result.",
	}, []string{"result"})
	lifetime := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "avedge_allocation_lifetime_seconds",
		Help:    "How long TURN allocations lived, observed when they end.",
		Buckets: lifetimeBuckets,
	})
	ended := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avedge_allocations_ended_total",
		Help: "TURN allocations that ended, by reason (normal: expired, released or shut down; admin; revoked).",
	}, []string{"reason"})
	authFails := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avedge_auth_failures_total",
		Help: "Requests whose credentials were refused, by reason.",
	}, []string{"reason"})
	credentials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avedge_credential_requests_total",
		Help: "Requests to the credential service, by API and result.",
	}, []string{"api", "result"})

	redirects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avedge_allocation_redirects_total",
		Help: "Allocate requests answered 300 (Try Alternate) naming another relay, by reason.",
	}, []string{"reason"})
	tlsExpiry := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "avedge_tls_certificate_expiry_timestamp_seconds",
		Help: "When the TLS certificate being served expires (Unix time), by pair: turn (cert, pkey), credential_service or admin.",
	}, []string{"pair"})
	tlsFailures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "avedge_tls_certificate_reload_failures_total",
		Help: "TLS certificate reloads refused (the current pair kept serving), by pair.",
	}, []string{"pair"})

	m := &Metrics{
		tlsExpiry:   tlsExpiry,
		tlsFailures: tlsFailures,
		scrape:      newCollector(opts),
		attempts:    children(attempts, attemptResults),
		lifetime:    lifetime,
		ended:       children(ended, endReasons),
		authFails:   children(authFails, authReasons),
		redirects:   children(redirects, redirectReasons),
		credentials: make(map[string]map[string]prometheus.Counter, len(credentialAPIs)),
	}
	for _, api := range credentialAPIs {
		byResult := make(map[string]prometheus.Counter, len(credentialResults))
		for _, result := range credentialResults {
			byResult[result] = credentials.WithLabelValues(api, result)
		}
		m.credentials[api] = byResult
	}

	for _, c := range []struct {
		name string
		c    prometheus.Collector
	}{
		{"avedge relay collector", m.scrape},
		{"avedge_allocation_attempts_total", attempts},
		{"avedge_allocation_lifetime_seconds", lifetime},
		{"avedge_allocations_ended_total", ended},
		{"avedge_auth_failures_total", authFails},
		{"avedge_credential_requests_total", credentials},
		{"avedge_allocation_redirects_total", redirects},
		{"avedge_tls_certificate_expiry_timestamp_seconds", tlsExpiry},
		{"avedge_tls_certificate_reload_failures_total", tlsFailures},
	} {
		if err := reg.Register(c.c); err != nil {
			return nil, fmt.Errorf("metrics: register %s: %w", c.name, err)
		}
	}
	return m, nil
}

// children resolves one child of vec per value, so that event methods do a
// read-only map lookup instead of hashing label values under the vector's
// lock.
func children(vec *prometheus.CounterVec, values []string) map[string]prometheus.Counter {
	out := make(map[string]prometheus.Counter, len(values))
	for _, v := range values {
		out[v] = vec.WithLabelValues(v)
	}
	return out
}

// SetSource installs what the scrape-time collector reads. Until it is set,
// the gauges and counters it exposes read 0. It is meant to be called once
// at start, but it is safe to call at any time, concurrently with scrapes.
// A nil s uninstalls the source.
func (m *Metrics) SetSource(s Source) {
	if m == nil {
		return
	}
	if s == nil {
		m.scrape.source.Store(nil)
		return
	}
	m.scrape.source.Store(&sourceBox{src: s})
}

// AllocationAttempt counts one Allocate request by result (the Attempt…
// constants); any other value is counted as "other".
func (m *Metrics) AllocationAttempt(result string) {
	if m == nil {
		return
	}
	lookup(m.attempts, result).Inc()
}

// AllocationEnded observes the lifetime of an allocation that has ended, in
// avedge_allocation_lifetime_seconds. A negative lifetime counts as 0.
func (m *Metrics) AllocationEnded(lifetime time.Duration) {
	if m == nil {
		return
	}
	m.lifetime.Observe(max(lifetime, 0).Seconds())
}

// AllocationEndedBy counts one allocation that ended, by reason (the End… constants); any
// other value is counted as "other".
func (m *Metrics) AllocationEndedBy(reason string) {
	if m == nil {
		return
	}
	lookup(m.ended, reason).Inc()
}

// AuthFailure counts one refused credential by reason (the Auth…
// constants); any other value is counted as "other".
func (m *Metrics) AuthFailure(reason string) {
	if m == nil {
		return
	}
	lookup(m.authFails, reason).Inc()
}

// CredentialRequest counts one request to the credential service by api
// (CredentialAPIMRAS, CredentialAPIJSON) and result (CredentialOK, …); a
// value outside either set is counted as "other".
func (m *Metrics) CredentialRequest(api, result string) {
	if m == nil {
		return
	}
	byResult, ok := m.credentials[api]
	if !ok {
		byResult = m.credentials[LabelOther]
	}
	lookup(byResult, result).Inc()
}

// TLSCertificate records the outcome of loading a TLS pair (TLSPairTURN,
// TLSPairCredentialService, TLSPairAdmin; any other value is counted as "other"): on success
// (err nil) the expiry of the certificate now served, notAfter; on failure one
// more refused reload. The first call for a pair exposes both of its series.
func (m *Metrics) TLSCertificate(pair string, notAfter time.Time, err error) {
	if m == nil {
		return
	}
	if pair != TLSPairTURN && pair != TLSPairCredentialService && pair != TLSPairAdmin {
		pair = LabelOther
	}
	failures := m.tlsFailures.WithLabelValues(pair)
	if err != nil {
		failures.Inc()
		return
	}
	m.tlsExpiry.WithLabelValues(pair).Set(float64(notAfter.Unix()))
}

// lookup returns the counter for v, or the one for LabelOther.
func lookup(byValue map[string]prometheus.Counter, v string) prometheus.Counter {
	if c, ok := byValue[v]; ok {
		return c
	}
	return byValue[LabelOther]
}
