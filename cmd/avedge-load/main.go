// Command avedge-load drives a TURN server with synthetic media traffic and
// reports throughput, loss, round-trip percentiles and, given the server's
// pid, packets relayed per CPU-second of the server. See package loadgen for
// the modes and the definition of a relayed packet.
//
//	avedge-load --server 127.0.0.1:3478 --secret S --clients 50 --rate 50 --size 160 --duration 10s --server-pid PID --json
//
// avedge's default caps are those of a public edge, not of a benchmark: --user gives every
// client one username, which avedge's user-quota (16) refuses beyond 16 clients with 486,
// and --rate 0 pushes one allocation past its max-bps (20 Mbit/s), whose excess is dropped
// and would count as loss. Start the relay under test with --user-quota -1 --max-bps -1 (and
// a range of at least --clients ports) for such runs; make bench-relay does. --secret mints
// a username per client and needs no override for the user quota.
// --local binds the clients and echo peers to another IPv4 address than 127.0.0.1: that of
// a veth, so that a relay in another network namespace reaches the peers (the namespace
// topology of scripts/bench-relay.sh). Every report gives the machine's busy CPU time over
// the window (/proc/stat, all CPUs), whatever process or softirq spent it.
// With --flood N it also floods the server, from the start of the send window, with N spoofed
// Binding requests and Allocates signed with a wrong password (loadgen.Flood), from
// --flood-sources addresses of 127.0.0.0/8, on one goroutine locked to its own thread (so at
// what one core reaches, or --flood-rate), and reports the flood beside the live calls'
// loss, refreshes and failed refreshes (scripts/bench-flood.sh).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/loadgen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "avedge-load:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("avedge-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "127.0.0.1:3478", "TURN server UDP address")
	local := fs.String("local", "127.0.0.1", "IPv4 address the clients and echo peers bind to (a veth's, to reach a relay in another network namespace)")
	mode := fs.String("mode", "channel", "channel, indication or pair")
	direct := fs.Bool("direct", false, "no relay: echo directly with the peer (baseline round trip)")
	clients := fs.Int("clients", 1, fmt.Sprintf("simulated clients, at most %d", loadgen.MaxClients))
	rate := fs.Int("rate", 50, "packets per second per client; 0 saturates a window of packets in flight")
	size := fs.Int("size", 160, fmt.Sprintf("payload bytes, %d..%d", loadgen.MinSize, loadgen.MaxSize))
	duration := fs.Duration("duration", 10*time.Second, fmt.Sprintf("send window, at most %s", loadgen.MaxDuration))
	window := fs.Int("window", 32, "packets in flight per client when --rate 0")
	groups := fs.Int("groups", 0, "pacing groups, each with its own echo peer (0: min(clients, GOMAXPROCS))")
	secret := fs.String("secret", "", "TURN REST shared secret (credentials minted per client)")
	user := fs.String("user", "", "long-term username shared by every client (instead of --secret; avedge needs --user-quota -1 beyond 16 clients)")
	password := fs.String("password", "", "long-term password (with --user)")
	pid := fs.Int("server-pid", 0, "measure this process's CPU time over the run")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	verbose := fs.Bool("v", false, "log setup and refresh events to stderr")
	refresh := fs.Duration("refresh", 2*time.Minute, "refresh allocations, permissions and channels this often")
	floodN := fs.Int("flood", 0, "flood the server with this many datagrams from the start of the send window (0: no flood)")
	floodDur := fs.Duration("flood-duration", 10*time.Second, "bound on the flood's time")
	floodRate := fs.Int("flood-rate", 0, "flood datagrams per second (0: as fast as one core sends)")
	floodSources := fs.Int("flood-sources", 1024, "flood source addresses, counted up from --flood-source")
	floodSource := fs.String("flood-source", "127.1.0.1", "first flood source address")
	floodNonces := fs.Bool("flood-nonce-per-source", false, "every flood source asks for a nonce of its own first (for servers that bind nonces to the client)")
	floodAllocEvery := fs.Int("flood-allocate-every", 2, "every n-th flood datagram is an Allocate with a wrong password, the rest Binding requests (-1: none)")
	err := fs.Parse(args)
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg := loadgen.Config{
		Mode: loadgen.Mode(*mode), Clients: *clients, Rate: *rate, Size: *size,
		Duration: *duration, Window: *window, Groups: *groups, ServerPID: *pid, RefreshInterval: *refresh,
	}
	if cfg.Local, err = netip.ParseAddr(*local); err != nil {
		return fmt.Errorf("--local: %w", err)
	}
	var fcfg loadgen.FloodConfig
	if *floodN > 0 {
		base, err := netip.ParseAddr(*floodSource)
		if err != nil {
			return fmt.Errorf("--flood-source: %w", err)
		}
		fcfg = loadgen.FloodConfig{
			Count: *floodN, Duration: *floodDur, Rate: *floodRate, Sources: *floodSources, SourceBase: base,
			AllocateEvery: *floodAllocEvery, NoncePerSource: *floodNonces,
		}
		if *secret != "" {
			// A live username, so that the server looks its key up and checks the HMAC.
			fcfg.Username, _ = auth.MintREST([]byte(*secret), "flood", time.Now().Add(time.Hour))
		}
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if *direct {
		cfg.Mode = loadgen.ModeDirect
	} else {
		ap, err := netip.ParseAddrPort(*server)
		if err != nil {
			return fmt.Errorf("--server: %w", err)
		}
		cfg.Server = ap
		switch {
		case *secret != "" && *user != "":
			return errors.New("--secret and --user are exclusive")
		case *secret != "":
			key := []byte(*secret)
			expiry := time.Now().Add(*duration + time.Hour)
			cfg.Credentials = func(i int) (string, string) {
				return auth.MintREST(key, "load"+strconv.Itoa(i), expiry)
			}
		case *user != "":
			u, p := *user, *password
			cfg.Credentials = func(int) (string, string) { return u, p }
		default:
			return errors.New("credentials needed: --secret or --user/--password")
		}
	}
	if isTerminal(stderr) {
		cfg.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(stderr, "\r%5.1fs  sent %d  received %d ", p.Elapsed.Seconds(), p.Sent, p.Received)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var fl *flood
	if *floodN > 0 {
		fcfg.Server = cfg.Server
		fl = startFloodOnProgress(ctx, &cfg, fcfg)
	}
	rep, err := loadgen.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprintln(stderr)
	}
	out := result{Report: rep}
	if fl != nil {
		fr, ferr := fl.wait()
		if ferr != nil && err == nil {
			err = fmt.Errorf("flood: %w", ferr)
		}
		out.Flood = fr
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(out)
	}
	if err := printReport(stdout, rep); err != nil {
		return err
	}
	if f := out.Flood; f != nil {
		_, err = fmt.Fprintf(stdout, "flood       %d datagrams (%d Binding, %d Allocate) from %d sources in %.2f s: %.0f/s  send errors %d\n"+
			"under flood refreshes %d, failed %d, clients with a failed refresh %d; probes lost %d of %d (%.4f%%)\n",
			f.Sent, f.Bindings, f.Allocates, f.Sources, f.Seconds, f.PerSecond, f.SendErrors,
			rep.Refreshes, rep.RefreshErrors, rep.RefreshFailedClients, rep.Lost, rep.Sent, rep.LossPercent)
	}
	return err
}

// result is the JSON report: the load run's fields, and the flood's.
type result struct {
	loadgen.Report
	Flood *loadgen.FloodReport `json:"flood,omitempty"`
}

// flood is a flood started with the send window.
type flood struct {
	cancel  context.CancelFunc
	started atomic.Bool
	done    chan struct{} // closed when the flood's goroutine has ended
	rep     *loadgen.FloodReport
	err     error
}

// startFloodOnProgress arranges for fcfg's flood to start at the run's first progress call
// (the send window has begun: every allocation is made), on a goroutine locked to its own OS
// thread.
func startFloodOnProgress(ctx context.Context, cfg *loadgen.Config, fcfg loadgen.FloodConfig) *flood {
	ctx, cancel := context.WithCancel(ctx)
	f := &flood{cancel: cancel, done: make(chan struct{})}
	prev := cfg.Progress
	cfg.Progress = func(p loadgen.Progress) {
		if !f.started.Swap(true) {
			go func() {
				defer close(f.done)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				rep, err := loadgen.Flood(ctx, fcfg)
				f.rep, f.err = &rep, err
			}()
		}
		if prev != nil {
			prev(p)
		}
	}
	return f
}

// wait ends the flood if it still runs and returns its report (nil if it never started).
// Call it once the run has returned.
func (f *flood) wait() (*loadgen.FloodReport, error) {
	f.cancel()
	if !f.started.Load() {
		return nil, nil
	}
	<-f.done
	return f.rep, f.err
}

func printReport(w io.Writer, r loadgen.Report) error {
	rate := strconv.Itoa(r.Rate) + " pps"
	if r.Rate == 0 {
		rate = fmt.Sprintf("saturating (window %d)", r.Window)
	}
	_, err := fmt.Fprintf(w, `mode        %s, %d clients × %s × %d B
window      %.2f s (setup %.2f s)
probes      sent %d (%.0f/s)  received %d  lost %d (%.4f%%)  corrupt %d  send errors %d
throughput  %.0f packets/s  %.2f Mbit/s  (delivered %d, relayed %d)
rtt (µs)    p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f
`, r.Mode, r.Clients, rate, r.Size, r.WindowSeconds, r.SetupSeconds,
		r.Sent, r.SentPerSecond, r.Received, r.Lost, r.LossPercent, r.Corrupt, r.SendErrors,
		r.PacketsPerSecond, r.Mbps, r.Delivered, r.Relayed,
		r.RTT.P50, r.RTT.P90, r.RTT.P99, r.RTT.P999, r.RTT.Max, r.RTT.Mean)
	if err != nil {
		return err
	}
	if r.ServerCPUSeconds > 0 {
		_, err = fmt.Fprintf(w, "server cpu  %.2f s  →  %.0f packets relayed per CPU-second\n", r.ServerCPUSeconds, r.RelayedPerCPUSecond)
	}
	if err == nil {
		_, err = fmt.Fprintf(w, "generator   %.2f CPU-s  refreshes %d (errors %d)\n", r.GeneratorCPUSeconds, r.Refreshes, r.RefreshErrors)
	}
	if err == nil {
		_, err = fmt.Fprintf(w, "machine     busy %.2f CPU-s  idle %.2f  steal %.2f (all CPUs, /proc/stat); other processes %.2f CPU-s\n",
			r.MachineBusyCPUSeconds, r.MachineIdleCPUSeconds, r.MachineStealCPUSeconds, r.OtherProcessesCPUSeconds)
	}
	return err
}

// isTerminal reports whether w is a terminal, so progress goes only to people.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
