package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	in := strings.Join([]string{
		"audio\tavedge\t" + `{"relayed_per_cpu_second":30000,"loss_percent":0,"rtt_us":{"p99":100}}`,
		"audio\tcoturn\t" + `{"relayed_per_cpu_second":20000,"loss_percent":0.5,"rtt_us":{"p99":300}}`,
		"audio\tavedge\t" + `{"relayed_per_cpu_second":34000,"loss_percent":0,"rtt_us":{"p99":120}}`,
		"audio\tcoturn\t" + `{"relayed_per_cpu_second":20000,"loss_percent":0.5,"rtt_us":{"p99":300}}`,
		"audio\tdirect\t" + `{"loss_percent":0,"rtt_us":{"p99":50}}`,
	}, "\n")
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// Medians 32000 and 20000; per-round ratios 1.50 and 1.70.
	for _, want := range []string{"32000", "1.60× (1.50–1.70)", "20000", "0.5000"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if lines := strings.Count(got, "\n"); lines != 4 {
		t.Errorf("%d lines, want header + 3 servers:\n%s", lines, got)
	}
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{"audio avedge {}", "audio\tavedge\t{not json"} {
		if err := run(strings.NewReader(in), &bytes.Buffer{}); err == nil {
			t.Errorf("input %q accepted", in)
		}
	}
}
