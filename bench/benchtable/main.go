// Command benchtable turns the results scripts/bench-relay.sh collects into
// its comparison tables. Input lines are "load<TAB>server<TAB>report-json",
// one per run, the report being avedge-load --json output; servers run the
// same load several rounds and the tables show the median of the rounds.
//
// The first table is packets relayed per CPU-second of the server process. The second,
// printed when the input has direct runs (server "direct": the same generator and echo
// peers, no relay) with the machine's CPU time, is the relay cost per relayed packet: see
// relayCost. Each relayed run is set beside the direct run of its load that came last before
// it, so the script alternates them (direct, relayed, direct, relayed, …). Where the input
// also has routed direct runs (server "direct-routed": the same generator and peers, the
// traffic forwarded by the kernel through the relay's namespace, no relay), each relayed run
// is also set beside the last of those since the last direct run (direct, direct-routed,
// relayed, …), in two more columns, and a third table gives both
// baselines' own rates, round trips and loss.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
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
	costs := costTable{byKey: map[[2]string]*costRuns{}, lastDirect: map[string]loadgen.Report{},
		lastRouted: map[string]loadgen.Report{}, baselines: map[[2]string]*baselineRuns{}}
	err := benchstat.ReadRuns(in, "load", func(load, srv string, report []byte) error {
		var rep loadgen.Report
		if err := json.Unmarshal(report, &rep); err != nil {
			return err
		}
		costs.add(load, srv, rep)
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
			if strings.HasPrefix(srv, "avedge") { // avedge and its variants (avedge-epoll, …)
				vsCoturn = benchstat.Ratio(r.perCPU, perCPUOf(results[[2]string{load, "coturn"}]))
				vsPion = benchstat.Ratio(r.perCPU, perCPUOf(results[[2]string{load, "pion"}]))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.4f\t%.0f\t%s\t%s\t\n",
				load, srv, len(r.perCPU), perCPU, benchstat.Median(r.loss), benchstat.Median(r.p99), vsCoturn, vsPion)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(costs.byKey) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	if err := costs.print(out, loads, servers); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return costs.printBaselines(out, loads)
}

func perCPUOf(r *runs) []float64 {
	if r == nil {
		return nil
	}
	return r.perCPU
}

// relayCost is the figure "relay cost per relayed packet", in µs of machine CPU: the machine's
// busy CPU time (all CPUs, from /proc/stat) during the relayed run, less that during the
// direct run of the same load, over the packets relayed. The generator and the echo peers
// make the same system calls in both runs, so the difference is what relaying cost, wherever
// the kernel charged it (the server, the sender's softirq, XDP). busy picks the busy time
// of a run: machineBusy, or ownBusy on a machine shared with other work.
//
// The direct run's busy time is scaled by the probes each run sent. At a paced load both
// runs send the same probes and the scale is 1 (the plain difference); a saturating run
// sends as fast as round trips come back, so the direct run, with no relay in the way, sends
// more, and its busy time per probe is what the relayed run's generator and peers cost.
// ok is false when either run lacks the machine's times or the relayed run relayed nothing.
func relayCost(relayed, direct loadgen.Report, busy func(loadgen.Report) float64) (us float64, ok bool) {
	if relayed.Relayed == 0 || relayed.Sent == 0 || direct.Sent == 0 ||
		relayed.MachineBusyCPUSeconds <= 0 || direct.MachineBusyCPUSeconds <= 0 {
		return 0, false
	}
	base := busy(direct) * float64(relayed.Sent) / float64(direct.Sent)
	return (busy(relayed) - base) / float64(relayed.Relayed) * 1e6, true
}

// machineBusy is the machine's busy CPU time over a run.
func machineBusy(r loadgen.Report) float64 { return r.MachineBusyCPUSeconds }

// ownBusy is the machine's busy CPU time over a run less that of processes other than the
// generator and the server (kernel threads stay in): the same figure with most of the work
// of whoever else shares the machine taken out.
func ownBusy(r loadgen.Report) float64 {
	return r.MachineBusyCPUSeconds - r.OtherProcessesCPUSeconds
}

// costRuns are one server's rounds at one load, each beside the direct run before it.
type costRuns struct {
	cost       []float64 // relayCost, µs
	own        []float64 // relayCost of ownBusy, µs
	rate       []float64 // packets relayed per second of the window
	loss       []float64
	directLoss []float64
	p99        []float64
	p99Direct  []float64 // the round's p99 less the direct run's, µs
	// Beside the routed direct run before it, where there is one.
	routed     []float64 // relayCost against the routed direct run, µs
	p99Routed  []float64 // the round's p99 less the routed direct run's, µs
	saturating bool
}

// Names of the baseline runs in the input.
const (
	direct       = "direct"        // no relay: generator and echo peers talk directly
	directRouted = "direct-routed" // no relay, the kernel forwards through the relay's namespace
)

// baselineRuns are a baseline's rounds at one load.
type baselineRuns struct {
	rate, loss, p99 []float64 // packets delivered per second (both legs), loss %, p99 µs
}

// costTable collects the runs of the relay cost table, in input order.
type costTable struct {
	byKey      map[[2]string]*costRuns
	lastDirect map[string]loadgen.Report // by load: the direct run read last
	lastRouted map[string]loadgen.Report // by load: the routed direct run read last
	baselines  map[[2]string]*baselineRuns
	routed     bool // the input has routed direct runs
}

func (t *costTable) add(load, srv string, rep loadgen.Report) {
	if srv == direct || srv == directRouted {
		if srv == direct {
			t.lastDirect[load] = rep
			delete(t.lastRouted, load) // a routed run counts for the relayed runs after it and this direct run
		} else {
			t.lastRouted[load] = rep
			t.routed = true
		}
		b := t.baselines[[2]string{load, srv}]
		if b == nil {
			b = &baselineRuns{}
			t.baselines[[2]string{load, srv}] = b
		}
		rate := 0.0
		if rep.WindowSeconds > 0 {
			rate = float64(rep.Delivered) / rep.WindowSeconds
		}
		b.rate = append(b.rate, rate)
		b.loss = append(b.loss, rep.LossPercent)
		b.p99 = append(b.p99, rep.RTT.P99)
		return
	}
	d, ok := t.lastDirect[load]
	if !ok {
		return
	}
	cost, ok := relayCost(rep, d, machineBusy)
	if !ok {
		return
	}
	own, _ := relayCost(rep, d, ownBusy)
	key := [2]string{load, srv}
	c := t.byKey[key]
	if c == nil {
		c = &costRuns{saturating: rep.Rate == 0}
		t.byKey[key] = c
	}
	c.cost = append(c.cost, cost)
	c.own = append(c.own, own)
	rate := 0.0
	if rep.WindowSeconds > 0 {
		rate = float64(rep.Relayed) / rep.WindowSeconds
	}
	c.rate = append(c.rate, rate)
	c.loss = append(c.loss, rep.LossPercent)
	c.directLoss = append(c.directLoss, d.LossPercent)
	c.p99 = append(c.p99, rep.RTT.P99)
	c.p99Direct = append(c.p99Direct, rep.RTT.P99-d.RTT.P99)
	if rd, ok := t.lastRouted[load]; ok {
		if cost, ok := relayCost(rep, rd, machineBusy); ok {
			c.routed = append(c.routed, cost)
			c.p99Routed = append(c.p99Routed, rep.RTT.P99-rd.RTT.P99)
		}
	}
}

// print writes the relay cost table: per load and server, the median cost and its ratio to
// coturn's and to avedge's user-space loop (with the range of the per-round ratios), the
// same of the cost less other processes, the rate relayed (and its ratio to coturn's at a
// saturating load), loss beside the direct run's, and p99 beside the direct run's; with
// routed direct runs, the cost and p99 against those too ("over routed").
func (t *costTable) print(out io.Writer, loads, servers []string) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "load\tserver\trounds\trelay cost µs/pkt\tcost/coturn\tcost/avedge\t" +
		"less others µs/pkt\t/coturn\t/avedge\trelayed/s\trate/coturn\tloss %\tdirect loss %\tp99 µs\tp99−direct µs\t"
	if t.routed {
		header += "over routed µs/pkt\t/coturn\tp99−routed µs\t"
	}
	fmt.Fprintln(tw, header)
	for _, load := range loads {
		coturn, ave := t.byKey[[2]string{load, "coturn"}], t.byKey[[2]string{load, "avedge"}]
		for _, srv := range servers {
			c := t.byKey[[2]string{load, srv}]
			if c == nil {
				continue
			}
			var vsCoturn, vsAvedge, ownVsCoturn, ownVsAvedge, rateVsCoturn string
			if srv != "coturn" && coturn != nil {
				vsCoturn = benchstat.Ratio(c.cost, coturn.cost)
				ownVsCoturn = benchstat.Ratio(c.own, coturn.own)
				if c.saturating {
					rateVsCoturn = benchstat.Ratio(c.rate, coturn.rate)
				}
			}
			if srv != "avedge" && ave != nil {
				vsAvedge = benchstat.Ratio(c.cost, ave.cost)
				ownVsAvedge = benchstat.Ratio(c.own, ave.own)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%s\t%s\t%.2f\t%s\t%s\t%.0f\t%s\t%.4f\t%.4f\t%.0f\t%.0f\t",
				load, srv, len(c.cost), benchstat.Median(c.cost), vsCoturn, vsAvedge,
				benchstat.Median(c.own), ownVsCoturn, ownVsAvedge,
				benchstat.Median(c.rate), rateVsCoturn, benchstat.Median(c.loss), benchstat.Median(c.directLoss),
				benchstat.Median(c.p99), benchstat.Median(c.p99Direct))
			if t.routed {
				overRouted, vsCoturn, p99Routed := "-", "", "-"
				if len(c.routed) > 0 {
					overRouted = fmt.Sprintf("%.2f", benchstat.Median(c.routed))
					p99Routed = fmt.Sprintf("%.0f", benchstat.Median(c.p99Routed))
					if srv != "coturn" && coturn != nil {
						vsCoturn = benchstat.Ratio(c.routed, coturn.routed)
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t", overRouted, vsCoturn, p99Routed)
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

// printBaselines writes the baselines' own figures: per load, the direct runs' (and the routed
// direct runs') rate, loss and p99, medians of their rounds, and for a routed baseline its
// rate against the direct one's.
func (t *costTable) printBaselines(out io.Writer, loads []string) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "load\tbaseline\trounds\tpackets/s\t/direct\tloss %\tp99 µs\t")
	for _, load := range loads {
		d := t.baselines[[2]string{load, direct}]
		for _, name := range []string{direct, directRouted} {
			b := t.baselines[[2]string{load, name}]
			if b == nil {
				continue
			}
			vsDirect := ""
			if name != direct && d != nil {
				vsDirect = benchstat.Ratio(b.rate, d.rate)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%.4f\t%.0f\t\n", load, name, len(b.rate),
				benchstat.Median(b.rate), vsDirect, benchstat.Median(b.loss), benchstat.Median(b.p99))
		}
	}
	return tw.Flush()
}
