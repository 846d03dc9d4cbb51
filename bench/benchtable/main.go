// Command benchtable turns the results scripts/bench-relay.sh collects into
// its comparison table. Input lines are "load<TAB>server<TAB>report-json",
// one per run, the report being avedge-load --json output; servers run the
// same load several rounds and the table shows the median of the rounds.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/avedge/avedge/loadgen"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

type runs struct {
	perCPU, loss, p99 []float64
}

func run(in io.Reader, out io.Writer) error {
	var loads, servers []string
	results := map[[2]string]*runs{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		parts := strings.SplitN(text, "\t", 3)
		if len(parts) != 3 {
			return fmt.Errorf("line %d: want load<TAB>server<TAB>json", line)
		}
		var rep loadgen.Report
		if err := json.Unmarshal([]byte(parts[2]), &rep); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		key := [2]string{parts[0], parts[1]}
		if !slices.Contains(loads, parts[0]) {
			loads = append(loads, parts[0])
		}
		if !slices.Contains(servers, parts[1]) {
			servers = append(servers, parts[1])
		}
		r := results[key]
		if r == nil {
			r = &runs{}
			results[key] = r
		}
		r.perCPU = append(r.perCPU, rep.RelayedPerCPUSecond)
		r.loss = append(r.loss, rep.LossPercent)
		r.p99 = append(r.p99, rep.RTT.P99)
	}
	if err := sc.Err(); err != nil {
		return err
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tserver\trounds\trelayed/CPU-s\tloss %\tp99 µs\tavedge/coturn\tavedge/pion\t")
	for _, load := range loads {
		ave := results[[2]string{load, "avedge"}]
		for _, srv := range servers {
			r := results[[2]string{load, srv}]
			if r == nil {
				continue
			}
			perCPU := "-"
			if m := median(r.perCPU); m > 0 {
				perCPU = fmt.Sprintf("%.0f", m)
			}
			vsCoturn, vsPion := "", ""
			if srv == "avedge" && ave != nil {
				vsCoturn = ratio(ave, results[[2]string{load, "coturn"}])
				vsPion = ratio(ave, results[[2]string{load, "pion"}])
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.4f\t%.0f\t%s\t%s\t\n",
				load, srv, len(r.perCPU), perCPU, median(r.loss), median(r.p99), vsCoturn, vsPion)
		}
	}
	return tw.Flush()
}

// ratio is the ratio of the medians and, when both servers ran every round, the range of
// the per-round ratios (rounds alternate the servers, so round i of one is run beside round
// i of the other): on a noisy machine the spread says how far to trust the median.
func ratio(a, b *runs) string {
	if a == nil || b == nil {
		return "-"
	}
	x, y := median(a.perCPU), median(b.perCPU)
	if x <= 0 || y <= 0 {
		return "-"
	}
	s := fmt.Sprintf("%.2f×", x/y)
	if len(a.perCPU) < 2 || len(a.perCPU) != len(b.perCPU) {
		return s
	}
	lo, hi := 0.0, 0.0
	for i := range a.perCPU {
		if b.perCPU[i] <= 0 {
			return s
		}
		r := a.perCPU[i] / b.perCPU[i]
		if i == 0 || r < lo {
			lo = r
		}
		if i == 0 || r > hi {
			hi = r
		}
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", s, lo, hi)
}

// median of v; the mean of the middle two for an even count.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
