// Command controlload measures a TURN server's control plane, for scripts/bench-control.sh:
// it makes --allocations allocations with the pion/turn v5 client (one UDP socket and one
// client per allocation, TURN REST credentials, --clients allocating at once), holds every one
// open until all are made, then times --samples Refreshes and ChannelBinds with all of them
// live. It reports allocations per second (overall and per tenth of the run, so the rate with
// 90–100 % live is the last tenth), Allocate/Refresh/ChannelBind latency percentiles, every
// failure by error code, and, given the server's pid, the server's RSS per allocation (VmRSS
// before and after) and its CPU time over the setup.
//
//	controlload --server 127.0.0.1:3478 --secret S --allocations 10000 --clients 8 --server-pid PID --json
//
// With --table it reads the reports of several runs (scripts/bench-control.sh collects them)
// and prints the comparison table instead.
//
// It is a benchmark fixture, not a product.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := mainErr(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "controlload:", err)
		os.Exit(1)
	}
}

// perSourceMax is how many client sockets share one source address: well inside the
// ephemeral port range (net.ipv4.ip_local_port_range, 28 232 ports by default).
const perSourceMax = 16000

func mainErr(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("controlload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "127.0.0.1:3478", "TURN server UDP address")
	secret := fs.String("secret", "", "TURN REST shared secret (required)")
	n := fs.Int("allocations", 1000, "allocations to make and hold open, 1..1000000")
	clients := fs.Int("clients", 8, "allocations in progress at once (client goroutines)")
	source := fs.String("source", "127.0.1.1", "first client source address; every 16 000 sockets take the next")
	samples := fs.Int("samples", 1000, "Refreshes and ChannelBinds timed with every allocation live")
	peer := fs.String("peer", "127.0.0.1:20000", "XOR-PEER-ADDRESS of the ChannelBinds (nothing needs to listen there)")
	pid := fs.Int("server-pid", 0, "server process: RSS per allocation and CPU over the setup")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	verbose := fs.Bool("v", false, "progress to stderr every second")
	asTable := fs.Bool("table", false, "no run: read \"N<TAB>server<TAB>json\" lines of --json reports on stdin and print the comparison table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *asTable {
		return table(stdin, stdout)
	}
	cfg := config{n: *n, clients: *clients, samples: *samples, pid: *pid, timeout: *timeout, perSource: perSourceMax}
	var err error
	if cfg.server, err = netip.ParseAddrPort(*server); err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if cfg.peer, err = netip.ParseAddrPort(*peer); err != nil {
		return fmt.Errorf("--peer: %w", err)
	}
	first, err := netip.ParseAddr(*source)
	if err != nil || !first.Is4() {
		return fmt.Errorf("--source %q: want an IPv4 address", *source)
	}
	switch {
	case *secret == "":
		return errors.New("--secret is required")
	case cfg.n < 1 || cfg.n > 1000000:
		return fmt.Errorf("--allocations %d not in 1..1000000", cfg.n)
	case cfg.clients < 1 || cfg.clients > 1024:
		return fmt.Errorf("--clients %d not in 1..1024", cfg.clients)
	case cfg.samples < 0:
		return fmt.Errorf("--samples %d is negative", cfg.samples)
	case cfg.timeout <= 0 || cfg.timeout > time.Hour:
		return fmt.Errorf("--timeout %s not in (0, 1h]", cfg.timeout)
	}
	cfg.secret = []byte(*secret)
	cfg.sources, err = sourceAddrs(first, (cfg.n+perSourceMax-1)/perSourceMax)
	if err != nil {
		return err
	}
	if *verbose {
		cfg.logProgress = func(made, failed int, el time.Duration) {
			fmt.Fprintf(stderr, "%6.1fs  made %d  failed %d\n", el.Seconds(), made, failed)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	return printReport(stdout, rep)
}

// sourceAddrs returns k consecutive IPv4 addresses from first, all in 127.0.0.0/8 if first is.
func sourceAddrs(first netip.Addr, k int) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, k)
	a := first
	for range k {
		if !a.IsValid() || (first.IsLoopback() && !a.IsLoopback()) {
			return nil, fmt.Errorf("%d source addresses from %s leave the range", k, first)
		}
		out = append(out, a)
		a = a.Next()
	}
	return out, nil
}

func printReport(w io.Writer, r Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "allocations  %d of %d made by %d clients in %.2f s: %.0f/s (client CPU %.2f s)\n",
		r.Made, r.Allocations, r.Clients, r.SetupSeconds, r.AllocsPerSecond, r.ClientCPUSeconds)
	if len(r.TenthRates) == 10 {
		fmt.Fprintf(&b, "per tenth    %s /s\n", joinRates(r.TenthRates))
	}
	fmt.Fprintf(&b, "failures     %s  retransmits %d  stale nonces %d\n", failures(r.Failures), r.Retransmits, r.StaleNonces)
	for _, l := range []struct {
		name string
		l    Latency
		f    map[string]int
	}{{"allocate", r.Allocate, nil}, {"refresh", r.Refresh, r.RefreshFailures}, {"channelbind", r.ChannelBind, r.ChannelBindFailures}} {
		fmt.Fprintf(&b, "%-12s %d ok: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms", l.name, l.l.Count, l.l.P50, l.l.P90, l.l.P99, l.l.Max)
		if l.f != nil {
			fmt.Fprintf(&b, "  failures %s", failures(l.f))
		}
		b.WriteByte('\n')
	}
	if r.RSSAfter > 0 {
		fmt.Fprintf(&b, "server       RSS %.1f → %.1f MB, %.1f kB per allocation; CPU %.2f s over the setup\n",
			float64(r.RSSBefore)/1e6, float64(r.RSSAfter)/1e6, r.RSSPerAllocation/1e3, r.ServerCPUSeconds)
	}
	if r.Incomplete != "" {
		fmt.Fprintf(&b, "incomplete   %s\n", r.Incomplete)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func joinRates(r []float64) string {
	s := make([]string, len(r))
	for i, x := range r {
		s[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(s, " ")
}

// failures formats counts by class, "none" when there are none.
func failures(f map[string]int) string {
	if len(f) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, f[k]))
	}
	return strings.Join(slices.Clip(parts), " ")
}
