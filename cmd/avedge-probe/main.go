// Command avedge-probe shows what a client gets from the edge: it gathers ICE
// candidates (host, server reflexive, relay) against STUN and TURN servers,
// says which server each came from and how long it took, and why a server
// failed (401, timeout, refused, TLS). With --check it connects two relay-only
// ICE agents through the edge and measures the call path.
//
// The work is done by package probe; this is flags and output.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pion/ice/v4"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/probe"
)

// Exit codes.
const (
	exitOK           = 0
	exitError        = 1
	exitUsage        = 2
	exitNoRelay      = 3
	exitAuthRefused  = 4
	exitConnectivity = 5
)

const usageText = `usage: avedge-probe [flags]

Gathers ICE candidates against STUN/TURN servers like a client would and
prints them grouped by type (host, srflx, relay) with the server each came
from, then one line per server with why it failed, if it did.

Credentials, one of:
  --service URL [--api-key KEY] [--identity ID] [--mras]   from the credential service
                                 (the relay list comes with them unless --url is given)
  --username U --password P      long-term credentials
  --secret S [--user NAME]       TURN REST shared secret (minted here, valid --ttl)

Servers: --url, repeatable: turn:host:3478?transport=udp, turn:host:443?transport=tcp,
  turns:host:443?transport=tcp, stun:host:3478.

Exit codes:
  0  ok (a relay candidate was gathered; with --check, the check passed)
  1  other error (credential service unreachable, bad answer…)
  2  usage error
  3  no relay candidate (with only stun: URLs: no srflx candidate)
  4  auth refused (credential service 401/403, or every TURN server 401)
  5  connectivity failed (--check did not connect, lost every packet, or corrupted one)

Flags:
`

type urlList []string

func (u *urlList) String() string     { return strings.Join(*u, ",") }
func (u *urlList) Set(s string) error { *u = append(*u, s); return nil }

type options struct {
	urls                      urlList
	username, password        string
	secret, user              string
	service, apiKey, identity string
	mras                      bool
	ttl, timeout              time.Duration
	networks                  string
	includeLoopback, insecure bool
	check                     bool
	count, size               int
	interval                  time.Duration
	jsonOut, verbose          bool
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("avedge-probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	fs.Var(&o.urls, "url", "STUN/TURN URL (repeatable)")
	fs.StringVar(&o.username, "username", "", "TURN username")
	fs.StringVar(&o.password, "password", "", "TURN password")
	fs.StringVar(&o.secret, "secret", "", "TURN REST shared secret to mint credentials with")
	fs.StringVar(&o.user, "user", "avedge-probe", "user part of a minted TURN REST username")
	fs.StringVar(&o.service, "service", "", "credential service base URL (http(s)://host:port)")
	fs.StringVar(&o.apiKey, "api-key", os.Getenv("AVEDGE_API_KEY"), "credential service API key (default $AVEDGE_API_KEY)")
	fs.StringVar(&o.identity, "identity", "avedge-probe", "identity to ask the credential service credentials for")
	fs.BoolVar(&o.mras, "mras", false, "use the service's MRAS XML API (POST /mras) instead of JSON (GET /credentials)")
	fs.DurationVar(&o.ttl, "ttl", time.Hour, "lifetime of requested or minted credentials")
	fs.DurationVar(&o.timeout, "timeout", probe.DefaultTimeout, "bound on gathering (and on the check's connecting)")
	fs.StringVar(&o.networks, "network", "udp4,udp6,tcp4", "candidate network types, comma separated")
	fs.BoolVar(&o.includeLoopback, "include-loopback", false, "gather host candidates on loopback interfaces too")
	fs.BoolVar(&o.insecure, "insecure", false, "skip certificate verification on turns: URLs")
	fs.BoolVar(&o.check, "check", false, "also connect two relay-only ICE agents through the edge and exchange packets")
	fs.IntVar(&o.count, "count", probe.DefaultCount, "--check: packets each way")
	fs.IntVar(&o.size, "size", probe.DefaultSize, "--check: packet size in bytes")
	fs.DurationVar(&o.interval, "interval", probe.DefaultInterval, "--check: pause between packets")
	fs.BoolVar(&o.jsonOut, "json", false, "print one JSON document instead of tables")
	fs.BoolVar(&o.verbose, "v", false, "debug logs (pion's included) on stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	sources := 0
	for _, set := range []bool{o.service != "", o.username != "" || o.password != "", o.secret != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources > 1:
		return nil, errors.New("give one of --service, --username/--password, --secret")
	case o.service == "" && len(o.urls) == 0:
		return nil, errors.New("no server: give --url (or --service for its relay list)")
	case (o.username == "") != (o.password == ""):
		return nil, errors.New("--username and --password go together")
	case o.timeout <= 0 || o.ttl <= 0 || o.count <= 0 || o.interval <= 0:
		return nil, errors.New("--timeout, --ttl, --count and --interval must be positive")
	case o.size < probe.MinSize || o.size > probe.MaxSize:
		return nil, fmt.Errorf("--size must be in [%d, %d]", probe.MinSize, probe.MaxSize)
	}
	return o, nil
}

func parseNetworks(s string) ([]ice.NetworkType, error) {
	var out []ice.NetworkType
	for _, f := range strings.Split(s, ",") {
		switch strings.TrimSpace(f) {
		case "udp4":
			out = append(out, ice.NetworkTypeUDP4)
		case "udp6":
			out = append(out, ice.NetworkTypeUDP6)
		case "tcp4":
			out = append(out, ice.NetworkTypeTCP4)
		case "tcp6":
			out = append(out, ice.NetworkTypeTCP6)
		default:
			return nil, fmt.Errorf("--network %q: want udp4, udp6, tcp4, tcp6", f)
		}
	}
	return out, nil
}

// output is the --json document.
type output struct {
	Credentials *probe.Credentials `json:"credentials,omitempty"`
	Gather      *probe.Report      `json:"gather,omitempty"`
	Check       *probe.CheckReport `json:"check,omitempty"`
	Error       string             `json:"error,omitempty"`
	Exit        int                `json:"exit"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "avedge-probe: %v\n", err)
		return exitUsage
	}
	networks, err := parseNetworks(o.networks)
	if err != nil {
		fmt.Fprintf(stderr, "avedge-probe: %v\n", err)
		return exitUsage
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	out := &output{}
	finish := func(code int, err error) int {
		out.Exit = code
		if err != nil {
			out.Error = err.Error()
		}
		if o.jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			_ = enc.Encode(out)
		} else if err != nil {
			fmt.Fprintf(stderr, "avedge-probe: %v\n", err)
		}
		return code
	}

	var creds probe.Credentials
	raw := []string(o.urls)
	switch {
	case o.service != "":
		g, err := probe.FetchCredentials(ctx, probe.Service{URL: o.service, APIKey: o.apiKey, Identity: o.identity, TTL: o.ttl, MRAS: o.mras})
		if err != nil {
			if errors.Is(err, probe.ErrAuthRefused) {
				return finish(exitAuthRefused, err)
			}
			return finish(exitError, err)
		}
		creds = g.Credentials
		if len(raw) == 0 {
			raw = g.URLs
		}
		if len(raw) == 0 {
			return finish(exitError, errors.New("the credential service listed no relay; give --url"))
		}
	case o.secret != "":
		creds.Username, creds.Password = auth.MintREST([]byte(o.secret), o.user, time.Now().Add(o.ttl))
		creds.TTL = o.ttl
	default:
		creds = probe.Credentials{Username: o.username, Password: o.password}
	}
	if creds.Username != "" {
		out.Credentials = &creds
	}
	urls, err := probe.ParseURLs(raw, creds)
	if err != nil {
		fmt.Fprintf(stderr, "avedge-probe: %v\n", err)
		return exitUsage
	}
	cfg := probe.Config{
		URLs: urls, Credentials: creds, NetworkTypes: networks, Timeout: o.timeout,
		IncludeLoopback: o.includeLoopback, InsecureSkipVerify: o.insecure, Logger: log,
	}
	rep, err := probe.Gather(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "avedge-probe: %v\n", err)
		return exitUsage
	}
	out.Gather = rep
	if !o.jsonOut {
		if creds.Username != "" {
			fmt.Fprintf(stdout, "credentials  username %s", creds.Username)
			if creds.TTL > 0 {
				fmt.Fprintf(stdout, ", valid %v", creds.TTL)
			}
			fmt.Fprint(stdout, "\n\n")
		}
		_ = rep.WriteText(stdout)
	}
	if err := rep.Err(); err != nil {
		if errors.Is(err, probe.ErrAuthRefused) {
			return finish(exitAuthRefused, err)
		}
		return finish(exitNoRelay, err)
	}
	if o.check {
		chk, err := probe.Check(ctx, cfg, probe.CheckConfig{Count: o.count, Size: o.size, Interval: o.interval})
		out.Check = chk
		if chk != nil && !o.jsonOut {
			fmt.Fprintln(stdout)
			_ = chk.WriteText(stdout)
		}
		switch {
		case errors.Is(err, probe.ErrNoRelayCandidate):
			return finish(exitNoRelay, err)
		case err != nil:
			return finish(exitConnectivity, err)
		}
	}
	return finish(exitOK, nil)
}
