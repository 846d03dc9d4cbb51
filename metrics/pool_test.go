package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type poolMembers []PoolMember

func (p poolMembers) PoolMembers() []PoolMember { return p }

func TestPoolCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := poolMembers{
		{Member: "http://10.0.0.1:9641/load", Healthy: true, Listed: true, Score: 0.25, Rank: 1, Allocations: 40},
		{Member: "http://10.0.0.2:9641/load", Healthy: true, Draining: true, Score: 1, Allocations: 7},
		{Member: "http://10.0.0.3:9641/load", Score: 1, Fails: 3},
	}
	if err := reg.Register(NewPoolCollector(src)); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP avedge_pool_member_listed 1 while the pool member is handed to clients (healthy, not draining).
# TYPE avedge_pool_member_listed gauge
avedge_pool_member_listed{member="http://10.0.0.1:9641/load"} 1
avedge_pool_member_listed{member="http://10.0.0.2:9641/load"} 0
avedge_pool_member_listed{member="http://10.0.0.3:9641/load"} 0
# HELP avedge_pool_member_score The pool member's load score, 0 (idle) to 1 (full); 1 when not listed.
# TYPE avedge_pool_member_score gauge
avedge_pool_member_score{member="http://10.0.0.1:9641/load"} 0.25
avedge_pool_member_score{member="http://10.0.0.2:9641/load"} 1
avedge_pool_member_score{member="http://10.0.0.3:9641/load"} 1
# HELP avedge_pool_member_failed_polls Consecutive polls of the pool member that failed.
# TYPE avedge_pool_member_failed_polls gauge
avedge_pool_member_failed_polls{member="http://10.0.0.1:9641/load"} 0
avedge_pool_member_failed_polls{member="http://10.0.0.2:9641/load"} 0
avedge_pool_member_failed_polls{member="http://10.0.0.3:9641/load"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"avedge_pool_member_listed", "avedge_pool_member_score", "avedge_pool_member_failed_polls"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewPoolCollector(src)); n != 7*len(src) {
		t.Fatalf("%d series, want 7 per member", n)
	}
}

func TestRedirectCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Redirect(RedirectOverloaded)
	m.Redirect(RedirectOverloaded)
	m.Redirect("bogus")
	want := `
# HELP avedge_allocation_redirects_total Allocate requests answered 300 (Try Alternate) naming another relay, by reason.
# TYPE avedge_allocation_redirects_total counter
avedge_allocation_redirects_total{reason="draining"} 0
avedge_allocation_redirects_total{reason="other"} 1
avedge_allocation_redirects_total{reason="overloaded"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "avedge_allocation_redirects_total"); err != nil {
		t.Fatal(err)
	}
}
