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
	"strconv"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg := loadgen.Config{
		Mode: loadgen.Mode(*mode), Clients: *clients, Rate: *rate, Size: *size,
		Duration: *duration, Window: *window, Groups: *groups, ServerPID: *pid,
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
	rep, err := loadgen.Run(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(rep)
	}
	return printReport(stdout, rep)
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
