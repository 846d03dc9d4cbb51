package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/avedge/avedge/loadgen"
)

func TestTable(t *testing.T) {
	in := strings.Join([]string{
		"audio\tavedge\t" + `{"relayed_per_cpu_second":30000,"loss_percent":0,"rtt_us":{"p99":100}}`,
		"audio\tcoturn\t" + `{"relayed_per_cpu_second":20000,"loss_percent":0.5,"rtt_us":{"p99":300}}`,
		"audio\tavedge\t" + `{"relayed_per_cpu_second":34000,"loss_percent":0,"rtt_us":{"p99":120}}`,
		"audio\tcoturn\t" + `{"relayed_per_cpu_second":20000,"loss_percent":0.5,"rtt_us":{"p99":300}}`,
		"audio\tdirect\t" + `{"loss_percent":0,"rtt_us":{"p99":50}}`,
		"audio\tavedge-epoll\t" + `{"relayed_per_cpu_second":25000,"loss_percent":0,"rtt_us":{"p99":100}}`,
		"audio\tavedge-epoll\t" + `{"relayed_per_cpu_second":27000,"loss_percent":0,"rtt_us":{"p99":100}}`,
	}, "\n")
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// Medians 32000 and 20000; per-round ratios 1.50 and 1.70; avedge-epoll's own, 1.25 and 1.35.
	for _, want := range []string{"32000", "1.60× (1.50–1.70)", "20000", "0.5000", "1.30× (1.25–1.35)"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if lines := strings.Count(got, "\n"); lines != 5 {
		t.Errorf("%d lines, want header + 4 servers:\n%s", lines, got)
	}
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{"audio avedge {}", "audio\tavedge\t{not json"} {
		if err := run(strings.NewReader(in), &bytes.Buffer{}); err == nil {
			t.Errorf("input %q accepted", in)
		}
	}
}

// The relay cost table from recorded runs: each relayed run beside the direct run before it.
func TestCostTable(t *testing.T) {
	rec := func(load, srv string, sent, relayed int, busy, p99, window float64, rate int) string {
		other := 0.0
		if srv == "direct" && load == "audio" {
			other = 0.2 // another process's work during the direct runs only
		}
		return fmt.Sprintf(`%s	%s	{"rate_pps":%d,"sent":%d,"received":%d,"relayed":%d,"window_seconds":%g,"machine_busy_cpu_seconds":%g,"other_processes_cpu_seconds":%g,"rtt_us":{"p99":%g}}`,
			load, srv, rate, sent, sent, relayed, window, busy, other, p99)
	}
	in := strings.Join([]string{
		// A relayed run before any direct run has nothing to be set beside: left out.
		rec("audio", "avedge", 1000, 2000, 9, 999, 1, 50),
		// Round 1: avedge (1.2-1.0)/2000 = 100 µs, coturn (2.0-1.0)/2000 = 500 µs; less the
		// other process, avedge (1.2-0.8)/2000 = 200 µs, coturn 600 µs.
		rec("audio", "direct", 1000, 0, 1.0, 40, 1, 50),
		rec("audio", "avedge", 1000, 2000, 1.2, 100, 1, 50),
		rec("audio", "direct", 1000, 0, 1.0, 40, 1, 50),
		rec("audio", "coturn", 1000, 2000, 2.0, 140, 1, 50),
		// Round 2: avedge 100 µs, coturn 600 µs, per-round ratios 0.20 and 0.17; less the
		// other process, avedge 200 µs, coturn 700 µs, ratios 0.33 and 0.29.
		rec("audio", "direct", 1000, 0, 1.1, 50, 1, 50),
		rec("audio", "avedge", 1000, 2000, 1.3, 110, 1, 50),
		rec("audio", "direct", 1000, 0, 1.0, 50, 1, 50),
		rec("audio", "coturn", 1000, 2000, 2.2, 150, 1, 50),
		// Saturating: the direct run sent 5× the probes; its busy time is scaled to the
		// relayed run's: coturn (2.0-0.4)/4000 = 400 µs, avedge (2.0-0.2)/9000 = 200 µs.
		rec("saturate", "direct", 10000, 0, 2.0, 10, 2, 0),
		rec("saturate", "coturn", 2000, 4000, 2.0, 500, 2, 0),
		rec("saturate", "direct", 10000, 0, 2.0, 10, 2, 0),
		rec("saturate", "avedge", 1000, 9000, 2.0, 300, 2, 0),
	}, "\n")
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	_, costTable, ok := strings.Cut(out.String(), "\n\n")
	if !ok {
		t.Fatalf("no relay cost table:\n%s", out.String())
	}
	costTable, _, _ = strings.Cut(costTable, "\n\n") // the baselines' table follows
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(costTable), "\n")[1:] {
		f := strings.Fields(line)
		rows[f[0]+"/"+f[1]] = f
	}
	want := map[string][]string{
		// load server rounds cost [cost/coturn] [cost/avedge] less-others [/coturn] [/avedge]
		// relayed/s [rate/coturn] loss% direct-loss% p99 p99−direct (empty columns leave no field)
		"audio/avedge":    {"audio", "avedge", "2", "100.00", "0.18×", "(0.17–0.20)", "200.00", "0.31×", "(0.29–0.33)", "2000", "0.0000", "0.0000", "105", "60"},
		"audio/coturn":    {"audio", "coturn", "2", "550.00", "5.50×", "(5.00–6.00)", "650.00", "3.25×", "(3.00–3.50)", "2000", "0.0000", "0.0000", "145", "100"},
		"saturate/coturn": {"saturate", "coturn", "1", "400.00", "2.00×", "400.00", "2.00×", "2000", "0.0000", "0.0000", "500", "490"},
		"saturate/avedge": {"saturate", "avedge", "1", "200.00", "0.50×", "200.00", "0.50×", "4500", "2.25×", "0.0000", "0.0000", "300", "290"},
	}
	if len(rows) != len(want) {
		t.Errorf("%d rows, want %d:\n%s", len(rows), len(want), costTable)
	}
	for k, w := range want {
		if got := rows[k]; !slices.Equal(got, w) {
			t.Errorf("row %s = %q, want %q\n%s", k, got, w, costTable)
		}
	}
}

// Routed direct runs: each relayed run is set beside the routed run before it as well, in
// columns of their own, and the baselines' table gives both baselines' rates.
func TestCostTableRouted(t *testing.T) {
	rec := func(srv string, sent, delivered, relayed int, busy, p99 float64) string {
		return fmt.Sprintf(`saturate	%s	{"rate_pps":0,"sent":%d,"received":%d,"delivered":%d,"relayed":%d,"window_seconds":2,"machine_busy_cpu_seconds":%g,"rtt_us":{"p99":%g}}`,
			srv, sent, sent, delivered, relayed, busy, p99)
	}
	in := strings.Join([]string{
		// Round 1. Over direct: coturn (2.0-0.4)/4000 = 400 µs, avedge (2.0-0.2)/9000 = 200 µs.
		// Over routed, which costs 4× direct per probe: coturn (2.0-1.6)/4000 = 100 µs,
		// avedge (2.0-0.8)/9000 = 133.33 µs.
		rec("direct", 10000, 20000, 0, 2.0, 10),
		rec("direct-routed", 5000, 10000, 0, 4.0, 30),
		rec("coturn", 2000, 4000, 4000, 2.0, 500),
		rec("direct", 10000, 20000, 0, 2.0, 10),
		rec("direct-routed", 5000, 10000, 0, 4.0, 30),
		rec("avedge", 1000, 9000, 9000, 2.0, 300),
		// Round 2: only a plain direct run before coturn: no routed figures for this round.
		rec("direct", 10000, 30000, 0, 2.0, 10),
		rec("coturn", 2000, 4000, 4000, 2.0, 500),
	}, "\n")
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(out.String()), "\n\n")
	if len(parts) != 3 {
		t.Fatalf("%d tables, want 3:\n%s", len(parts), out.String())
	}
	rows := map[string][]string{}
	for _, table := range parts[1:] {
		lines := strings.Split(table, "\n")
		if table == parts[1] && !strings.Contains(lines[0], "over routed") {
			t.Errorf("no routed columns: %s", lines[0])
		}
		for _, line := range lines[1:] {
			f := strings.Fields(line)
			rows[f[0]+"/"+f[1]] = f
		}
	}
	want := map[string][]string{
		// ... p99 p99−direct over-routed [/coturn] p99−routed
		"saturate/coturn": {"saturate", "coturn", "2", "400.00", "2.00×", "400.00", "2.00×", "2000", "0.0000", "0.0000", "500", "490", "100.00", "470"},
		"saturate/avedge": {"saturate", "avedge", "1", "200.00", "0.50×", "200.00", "0.50×", "4500", "2.25×", "0.0000", "0.0000", "300", "290", "133.33", "1.33×", "270"},
		// load baseline rounds packets/s [/direct] loss p99 (3 direct rounds, 2 routed: no range)
		"saturate/direct":        {"saturate", "direct", "3", "10000", "0.0000", "10"},
		"saturate/direct-routed": {"saturate", "direct-routed", "2", "5000", "0.50×", "0.0000", "30"},
	}
	for k, w := range want {
		if got := rows[k]; !slices.Equal(got, w) {
			t.Errorf("row %s = %q, want %q\n%s", k, got, w, out.String())
		}
	}
}

func TestRelayCost(t *testing.T) {
	direct := loadgen.Report{Sent: 1000, MachineBusyCPUSeconds: 1, OtherProcessesCPUSeconds: 0.25}
	tests := []struct {
		name    string
		relayed loadgen.Report
		busy    func(loadgen.Report) float64
		want    float64
		ok      bool
	}{
		{"paced", loadgen.Report{Sent: 1000, Relayed: 2000, MachineBusyCPUSeconds: 1.5}, machineBusy, 250, true},
		{"paced, less other processes", loadgen.Report{Sent: 1000, Relayed: 2000, MachineBusyCPUSeconds: 1.5, OtherProcessesCPUSeconds: 0.5}, ownBusy, 125, true},
		{"cheaper than direct on a noisy machine", loadgen.Report{Sent: 1000, Relayed: 2000, MachineBusyCPUSeconds: 0.9}, machineBusy, -50, true},
		{"fewer probes than the direct run", loadgen.Report{Sent: 500, Relayed: 1000, MachineBusyCPUSeconds: 1}, machineBusy, 500, true},
		{"nothing relayed", loadgen.Report{Sent: 1000, MachineBusyCPUSeconds: 1.5}, machineBusy, 0, false},
		{"no machine times", loadgen.Report{Sent: 1000, Relayed: 2000}, machineBusy, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := relayCost(tt.relayed, direct, tt.busy)
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("relayCost = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
