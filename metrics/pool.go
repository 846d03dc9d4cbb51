package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of avedge_allocation_redirects_total{reason}, passed to [Metrics.Redirect].
const (
	RedirectDraining   = "draining"   // the relay drains
	RedirectOverloaded = "overloaded" // the relay's load score is over its threshold
)

var redirectReasons = []string{RedirectDraining, RedirectOverloaded, LabelOther}

// PoolMember is what a pool monitor believes of one relay of the pool.
type PoolMember struct {
	Member      string  // the URL of its load document (operator-configured or discovered)
	Healthy     bool    // answering, and its document says healthy
	Draining    bool    // its document says it drains
	Listed      bool    // handed to clients (healthy and not draining)
	Score       float64 // load score, 0 idle to 1 full (1 when not listed)
	Rank        int     // 1 for the first listed, 0 when not listed
	Allocations int     // live allocations, as last reported
	Fails       int     // consecutive failed polls
}

// PoolSource is what the pool collector reads at scrape time (pool.Monitor implements it).
type PoolSource interface {
	PoolMembers() []PoolMember
}

// poolCollector exposes a PoolSource's members. The member label is a load-document URL:
// a set the operator configures or the pool's discovery bounds, not a client's address.
type poolCollector struct {
	src                                                        PoolSource // Static after construction.
	healthy, draining, listed, score, rank, allocations, fails *prometheus.Desc
}

// NewPoolCollector returns the collector of what a pool monitor believes of each relay:
//
//	avedge_pool_member_healthy{member}      gauge, 0 or 1
//	avedge_pool_member_draining{member}     gauge, 0 or 1
//	avedge_pool_member_listed{member}       gauge, 0 or 1
//	avedge_pool_member_score{member}        gauge, 0 (idle) to 1 (full)
//	avedge_pool_member_rank{member}         gauge, 1 first listed, 0 not listed
//	avedge_pool_member_allocations{member}  gauge
//	avedge_pool_member_failed_polls{member} gauge, consecutive
//
// Register it beside [New]'s collectors on the same registry.
func NewPoolCollector(src PoolSource) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("avedge_pool_member_"+name, help, []string{"member"}, nil)
	}
	return &poolCollector{
		src:         src,
		healthy:     d("healthy", "1 while the pool member answers its load document and says it is healthy."),
		draining:    d("draining", "1 while the pool member's load document says it drains."),
		listed:      d("listed", "1 while the pool member is handed to clients (healthy, not draining)."),
		score:       d("score", "The pool member's load score, 0 (idle) to 1 (full); 1 when not listed."),
		rank:        d("rank", "The pool member's place in the relay lists, 1 first; 0 when not listed."),
		allocations: d("allocations", "Allocations the pool member last reported."),
		fails:       d("failed_polls", "Consecutive polls of the pool member that failed."),
	}
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.healthy, c.draining, c.listed, c.score, c.rank, c.allocations, c.fails} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, m := range c.src.PoolMembers() {
		for _, v := range []struct {
			d *prometheus.Desc
			v float64
		}{
			{c.healthy, b(m.Healthy)}, {c.draining, b(m.Draining)}, {c.listed, b(m.Listed)}, {c.score, m.Score},
			{c.rank, float64(m.Rank)}, {c.allocations, float64(m.Allocations)}, {c.fails, float64(m.Fails)},
		} {
			ch <- prometheus.MustNewConstMetric(v.d, prometheus.GaugeValue, v.v, m.Member)
		}
	}
}

// Redirect counts one Allocate request answered 300 (Try Alternate), by reason
// (RedirectDraining, RedirectOverloaded); any other value is counted as "other".
func (m *Metrics) Redirect(reason string) {
	if m == nil {
		return
	}
	lookup(m.redirects, reason).Inc()
}
