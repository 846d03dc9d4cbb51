package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	rep := func(rate, last float64, rss string, fails string) string {
		return `{"allocations":1000,"made":1000,"allocs_per_second":` + ftoa(rate) + `,"tenth_rates":[1,1,1,1,1,1,1,1,1,` + ftoa(last) +
			`],"rss_per_allocation_bytes":` + rss + `,"refresh_ms":{"p50":0.5,"p99":2},"channel_bind_ms":{"p50":0.25,"p99":1}` +
			`,"server_cpu_seconds":` + ftoa(1000/rate/2) + `,"client_cpu_seconds":0.25` + fails + `}`
	}
	in := strings.Join([]string{
		"1000\tavedge\t" + rep(3000, 2900, "9000", ""),
		"1000\tpion\t" + rep(2000, 2000, "15000", ""),
		"1000\tcoturn\t" + rep(1500, 1500, "22600", ""),
		"1000\tavedge\t" + rep(3400, 3000, "9200", `,"failures":{"437":2},"refresh_failures":{"timeout":1}`),
		"1000\tpion\t" + rep(2000, 2000, "15000", ""),
		"1000\tcoturn\t" + rep(2000, 2000, "22600", ""),
		"10\tcoturn\t" + `{"allocations":10,"made":4,"allocs_per_second":2,"incomplete":"cut short"}`,
	}, "\n")
	var out bytes.Buffer
	if err := table(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want header + 4 rows:\n%s", len(lines), got)
	}
	// Rows sorted by N: the cut-short coturn run at N=10 first, its 6 missing allocations shown.
	if !strings.Contains(lines[1], "coturn") || !strings.Contains(lines[1], "0 (6 not made)") {
		t.Errorf("N=10 row %q", lines[1])
	}
	avedge := lines[2]
	// Medians 3200 vs coturn 1750 and pion 2000; per-round ratios 2.00, 1.70 and 1.50, 1.70.
	// Server CPU per allocation is 1/(2·rate) here: allocations per CPU-second twice the rate,
	// so their ratios are the rates' ratios; the client used 250 µs per allocation.
	for _, want := range []string{"3200", "2950", "9.1", "0.50 / 2.00", "0.25 / 1.00", "1.83× (1.70–2.00)", "1.60× (1.50–1.70)", " 3 ",
		"6400", "250"} {
		if !strings.Contains(avedge, want) {
			t.Errorf("avedge row lacks %q:\n%s", want, got)
		}
	}
	if !strings.Contains(lines[4], "22.6") {
		t.Errorf("coturn row lacks its RSS per allocation in kB: %q", lines[4])
	}
}

func TestTableBadInput(t *testing.T) {
	for _, in := range []string{"1000 avedge {}", "1000\tavedge\t{not json", "many\tavedge\t{}", "0\tavedge\t{}"} {
		if err := table(strings.NewReader(in), &bytes.Buffer{}); err == nil {
			t.Errorf("input %q accepted", in)
		}
	}
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
