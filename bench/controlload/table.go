package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/avedge/avedge/bench/benchstat"
)

// rounds are one server's runs at one N, in round order.
type rounds struct {
	rate, last, rssPerAlloc, refresh50, refresh99, bind50, bind99 []float64
	// Allocations per CPU-second of the server, and the client's CPU per allocation in µs,
	// over the setup (0 when not measured). On a machine the client shares with the server
	// the rate is bounded by both processes' CPU; the server's own figure is what a client
	// on other cores would see.
	perServerCPU, clientCPU []float64
	failures                int // Allocate, Refresh and ChannelBind failures, every round
	short                   int // allocations not made (asked − made), every round
}

// table reads "N<TAB>server<TAB>report-json" lines (one per run, the report being controlload
// --json output) and writes the comparison: medians over the rounds of allocations per second
// (overall and in the last tenth, with 90–100 % live), RSS per allocation, Refresh and
// ChannelBind latency, failures summed over the rounds, and the ratios avedge/coturn and
// avedge/pion of allocations per second with the range of the per-round ratios; then the
// same ratios of allocations per CPU-second of the server, with the client's CPU per
// allocation beside them (the client shares the machine's cores).
func table(in io.Reader, out io.Writer) error {
	var ns []int
	var servers []string
	results := map[string]*rounds{}
	key := func(n int, srv string) string { return strconv.Itoa(n) + "\t" + srv }
	err := benchstat.ReadRuns(in, "N", func(nText, srv string, report []byte) error {
		n, err := strconv.Atoi(nText)
		if err != nil || n < 1 {
			return fmt.Errorf("N %q is not a positive count", nText)
		}
		var rep Report
		if err := json.Unmarshal(report, &rep); err != nil {
			return err
		}
		if !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
		if !slices.Contains(servers, srv) {
			servers = append(servers, srv)
		}
		r := results[key(n, srv)]
		if r == nil {
			r = &rounds{}
			results[key(n, srv)] = r
		}
		last := 0.0
		if len(rep.TenthRates) == 10 {
			last = rep.TenthRates[9]
		}
		r.rate = append(r.rate, rep.AllocsPerSecond)
		r.last = append(r.last, last)
		r.rssPerAlloc = append(r.rssPerAlloc, rep.RSSPerAllocation)
		r.refresh50 = append(r.refresh50, rep.Refresh.P50)
		r.refresh99 = append(r.refresh99, rep.Refresh.P99)
		r.bind50 = append(r.bind50, rep.ChannelBind.P50)
		r.bind99 = append(r.bind99, rep.ChannelBind.P99)
		perCPU, cli := 0.0, 0.0
		if rep.ServerCPUSeconds > 0 {
			perCPU = float64(rep.Made) / rep.ServerCPUSeconds
		}
		if rep.Made > 0 {
			cli = rep.ClientCPUSeconds / float64(rep.Made) * 1e6
		}
		r.perServerCPU = append(r.perServerCPU, perCPU)
		r.clientCPU = append(r.clientCPU, cli)
		r.failures += sum(rep.Failures) + sum(rep.RefreshFailures) + sum(rep.ChannelBindFailures)
		r.short += rep.Allocations - rep.Made
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(ns)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "live N\tserver\trounds\tallocs/s\tlast tenth/s\tfailed\tRSS kB/alloc\trefresh p50/p99 ms\tchannelbind p50/p99 ms\tavedge/coturn\tavedge/pion\tallocs/server CPU-s\tclient CPU µs/alloc\tper CPU-s avedge/coturn\tavedge/pion\t")
	for _, n := range ns {
		ave := results[key(n, "avedge")]
		for _, srv := range servers {
			r := results[key(n, srv)]
			if r == nil {
				continue
			}
			vsCoturn, vsPion, cpuCoturn, cpuPion := "", "", "", ""
			if srv == "avedge" {
				vsCoturn = benchstat.Ratio(ave.rate, rateOf(results[key(n, "coturn")]))
				vsPion = benchstat.Ratio(ave.rate, rateOf(results[key(n, "pion")]))
				cpuCoturn = benchstat.Ratio(ave.perServerCPU, perCPUOf(results[key(n, "coturn")]))
				cpuPion = benchstat.Ratio(ave.perServerCPU, perCPUOf(results[key(n, "pion")]))
			}
			perCPU := "-"
			if m := benchstat.Median(r.perServerCPU); m > 0 {
				perCPU = fmt.Sprintf("%.0f", m)
			}
			rss := "-"
			if m := benchstat.Median(r.rssPerAlloc); m > 0 {
				rss = fmt.Sprintf("%.1f", m/1e3)
			}
			failed := strconv.Itoa(r.failures)
			if r.short > r.failures {
				// A run cut short (timeout) makes fewer than asked without a failure each.
				failed += fmt.Sprintf(" (%d not made)", r.short)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%.0f\t%s\t%s\t%.2f / %.2f\t%.2f / %.2f\t%s\t%s\t%s\t%.0f\t%s\t%s\t\n",
				n, srv, len(r.rate), benchstat.Median(r.rate), benchstat.Median(r.last), failed, rss,
				benchstat.Median(r.refresh50), benchstat.Median(r.refresh99),
				benchstat.Median(r.bind50), benchstat.Median(r.bind99), vsCoturn, vsPion,
				perCPU, benchstat.Median(r.clientCPU), cpuCoturn, cpuPion)
		}
	}
	return tw.Flush()
}

func rateOf(r *rounds) []float64 {
	if r == nil {
		return nil
	}
	return r.rate
}

func perCPUOf(r *rounds) []float64 {
	if r == nil {
		return nil
	}
	return r.perServerCPU
}

func sum(m map[string]int) int {
	t := 0
	for _, v := range m {
		t += v
	}
	return t
}
