// Command benchtable turns the results scripts/bench-relay.sh collects into
// its comparison table. Input lines are "load<TAB>server<TAB>report-json",
// one per run, the report being avedge-load --json output; servers run the
// same load several rounds and the table shows the median of the rounds.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/avedge/avedge/bench/benchstat"
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
	err := benchstat.ReadRuns(in, "load", func(load, srv string, report []byte) error {
		var rep loadgen.Report
		if err := json.Unmarshal(report, &rep); err != nil {
			return err
		}
		key := [2]string{load, srv}
		if !slices.Contains(loads, load) {
			loads = append(loads, load)
		}
		if !slices.Contains(servers, srv) {
			servers = append(servers, srv)
		}
		r := results[key]
		if r == nil {
			r = &runs{}
			results[key] = r
		}
		r.perCPU = append(r.perCPU, rep.RelayedPerCPUSecond)
		r.loss = append(r.loss, rep.LossPercent)
		r.p99 = append(r.p99, rep.RTT.P99)
		return nil
	})
	if err != nil {
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
			if m := benchstat.Median(r.perCPU); m > 0 {
				perCPU = fmt.Sprintf("%.0f", m)
			}
			vsCoturn, vsPion := "", ""
			if srv == "avedge" && ave != nil {
				vsCoturn = benchstat.Ratio(ave.perCPU, perCPUOf(results[[2]string{load, "coturn"}]))
				vsPion = benchstat.Ratio(ave.perCPU, perCPUOf(results[[2]string{load, "pion"}]))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.4f\t%.0f\t%s\t%s\t\n",
				load, srv, len(r.perCPU), perCPU, benchstat.Median(r.loss), benchstat.Median(r.p99), vsCoturn, vsPion)
		}
	}
	return tw.Flush()
}

func perCPUOf(r *runs) []float64 {
	if r == nil {
		return nil
	}
	return r.perCPU
}
