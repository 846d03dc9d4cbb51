package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var dashboardPath = filepath.Join("..", "deploy", "grafana", "avedge-dashboard.json")

var metricName = regexp.MustCompile(`avedge_[a-z_]+`)

// queryKeys are the dashboard fields that hold PromQL: panel targets'
// expr, and template variables' query and definition.
var queryKeys = map[string]bool{"expr": true, "query": true, "definition": true}

// dashboardMetricNames returns the sorted avedge_ metric names used in the
// queries of a Grafana dashboard.
func dashboardMetricNames(dashboard []byte) ([]string, error) {
	var root any
	if err := json.Unmarshal(dashboard, &root); err != nil {
		return nil, fmt.Errorf("parse dashboard: %w", err)
	}
	seen := map[string]bool{}
	var walk func(v any, inQuery bool)
	walk = func(v any, inQuery bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				walk(child, inQuery || queryKeys[k])
			}
		case []any:
			for _, child := range v {
				walk(child, inQuery)
			}
		case string:
			if inQuery {
				for _, name := range metricName.FindAllString(v, -1) {
					seen[name] = true
				}
			}
		}
	}
	walk(root, false)
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// unknownMetrics returns the names in used that no family of exported
// provides. A histogram family also provides its _bucket, _sum and _count
// series.
func unknownMetrics(used []string, exported []*dto.MetricFamily) []string {
	provided := map[string]bool{}
	for _, mf := range exported {
		provided[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				provided[mf.GetName()+suffix] = true
			}
		}
	}
	var unknown []string
	for _, name := range used {
		if !provided[name] {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

// exportedFamilies gathers everything New registers. With no Source every
// collector still reports each of its series (at 0), so every family shows.
func exportedFamilies(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if _, err := New(reg, fixedOptions); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	used, err := dashboardMetricNames(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(used) == 0 {
		t.Fatal("dashboard queries no avedge_ metric")
	}
	if unknown := unknownMetrics(used, exportedFamilies(t)); len(unknown) > 0 {
		t.Fatalf("dashboard queries metrics avedge does not export: %v", unknown)
	}

	// The issue asks for panels on allocations, port use against capacity,
	// throughput each way, drops and auth failures.
	for _, want := range []string{
		"avedge_allocations_active",
		"avedge_relay_ports", "avedge_relay_ports_capacity",
		"avedge_relayed_bytes_total", "avedge_relayed_packets_total",
		"avedge_dropped_packets_total",
		"avedge_auth_failures_total",
	} {
		if !slices.Contains(used, want) {
			t.Errorf("dashboard has no query on %s", want)
		}
	}
}

func TestDashboardCheckCatchesBogusNames(t *testing.T) {
	exported := exportedFamilies(t)
	tests := []struct {
		name        string
		dashboard   string
		wantUnknown []string
	}{
		{
			name:        "all known",
			dashboard:   `{"panels":[{"targets":[{"expr":"sum(rate(avedge_relayed_bytes_total[5m])) * 8"}]}]}`,
			wantUnknown: nil,
		},
		{
			name:        "bogus name",
			dashboard:   `{"panels":[{"targets":[{"expr":"rate(avedge_bogus_total[5m])"}]}]}`,
			wantUnknown: []string{"avedge_bogus_total"},
		},
		{
			name:        "histogram suffixes",
			dashboard:   `{"panels":[{"targets":[{"expr":"rate(avedge_allocation_lifetime_seconds_bucket[5m]) + avedge_allocation_lifetime_seconds_count"}]}]}`,
			wantUnknown: nil,
		},
		{
			name:        "bucket suffix on a gauge",
			dashboard:   `{"panels":[{"targets":[{"expr":"avedge_allocations_active_bucket"}]}]}`,
			wantUnknown: []string{"avedge_allocations_active_bucket"},
		},
		{
			name:        "nested row panel",
			dashboard:   `{"panels":[{"type":"row","panels":[{"targets":[{"expr":"avedge_ports_free"}]}]}]}`,
			wantUnknown: []string{"avedge_ports_free"},
		},
		{
			name:        "template variable",
			dashboard:   `{"templating":{"list":[{"query":{"query":"label_values(avedge_nope, instance)"}}]}}`,
			wantUnknown: []string{"avedge_nope"},
		},
		{
			name:        "titles are not queries",
			dashboard:   `{"panels":[{"title":"avedge_whatever","targets":[{"expr":"avedge_draining"}]}]}`,
			wantUnknown: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			used, err := dashboardMetricNames([]byte(tc.dashboard))
			if err != nil {
				t.Fatal(err)
			}
			if got := unknownMetrics(used, exported); !slices.Equal(got, tc.wantUnknown) {
				t.Fatalf("unknown = %v, want %v", got, tc.wantUnknown)
			}
		})
	}
}

// TestDashboardShape checks what Grafana's import needs: a schema version,
// the ${DS_PROMETHEUS} input every panel and query uses, unique panel ids.
func TestDashboardShape(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct{ Type, UID string }
	type target struct {
		Datasource *datasource
		Expr       string
		RefID      string `json:"refId"`
	}
	type panel struct {
		ID         int
		Type       string
		Title      string
		Datasource *datasource
		Targets    []target
		Panels     json.RawMessage
	}
	var d struct {
		SchemaVersion int
		UID           string
		Title         string
		Inputs        []struct{ Name, Type, PluginID string } `json:"__inputs"`
		Panels        []panel
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("parse: %v", err)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion = %d, want about 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both set", d.UID, d.Title)
	}
	if !slices.ContainsFunc(d.Inputs, func(in struct{ Name, Type, PluginID string }) bool {
		return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
	}) {
		t.Errorf("__inputs lacks the DS_PROMETHEUS prometheus datasource: %+v", d.Inputs)
	}
	ids := map[int]string{}
	for _, p := range d.Panels {
		t.Run(fmt.Sprintf("%d %s", p.ID, p.Title), func(t *testing.T) {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panel id %d also used by %q", p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.Type == "row" {
				return
			}
			if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel datasource = %+v, want uid ${DS_PROMETHEUS}", p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Fatal("panel has no targets")
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
					t.Errorf("target %+v: want expr and refId", tg)
				}
				if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" {
					t.Errorf("target %s datasource = %+v, want uid ${DS_PROMETHEUS}", tg.RefID, tg.Datasource)
				}
				if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") ||
					strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") ||
					strings.Count(tg.Expr, "[") != strings.Count(tg.Expr, "]") {
					t.Errorf("target %s: unbalanced brackets in %q", tg.RefID, tg.Expr)
				}
			}
		})
	}
}
