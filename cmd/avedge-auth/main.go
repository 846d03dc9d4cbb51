// Command avedge-auth runs the avedge credential service (MRAS XML and TURN
// REST JSON) on its own, for deployments that keep it apart from the relays.
// It mints with the newest secret of --secret-file, the same file the relays
// read; with --tls-cert and --tls-key it serves HTTPS. SIGHUP re-reads the
// secrets and the TLS pair (a pair that does not load is refused and the
// current one stays), and the pair's files are also checked every
// --tls-reload-interval, a changed pair (a Kubernetes Secret update, a
// renewal) loaded for new connections; SIGINT or SIGTERM drain and stop. A file of secrets
// (--secret-file, --api-key-file, --tls-key) that users other than its owner
// can read is refused (internal/secretfile) unless --allow-readable-secrets.
//
//	avedge-auth --secret-file /etc/avedge/secrets --api-key-file /etc/avedge/api-keys \
//	    --tls-cert /etc/avedge/tls/tls.crt --tls-key /etc/avedge/tls/tls.key \
//	    --relay internet:edge.example.com:3478:443 --listen 10.0.0.5:8443
//
// With --pool-member or --pool-discover it polls the relays' load documents (GET /load
// beside their /metrics) and lists only healthy, non-draining relays, least loaded first
// (package pool); --relay is then the fallback when no relay of the pool answers.
//
// Without an API key (--allow-anonymous) it serves only on a loopback address;
// --insecure-anonymous forces anonymous mode on any address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/secretfile"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/pool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	err := run(ctx, os.Args[1:], os.Stderr, hup, nil)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "avedge-auth:", err)
		os.Exit(1)
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// shutdownTimeout bounds the drain of in-flight requests.
const shutdownTimeout = 10 * time.Second

// run serves until ctx is done. Each value on reload re-reads the secrets
// file and the TLS pair. ready, if set, is called with the bound address once serving.
func run(ctx context.Context, args []string, stderr io.Writer, reload <-chan os.Signal, ready func(net.Addr)) error {
	fs := flag.NewFlagSet("avedge-auth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "address to serve on (keep it off the public internet or use TLS and API keys)")
	secretFile := fs.String("secret-file", "", "secrets file shared with the relays (\"id secret\" per line, newest first); required")
	apiKeyFile := fs.String("api-key-file", "", "file of accepted API keys (bearer tokens), one per line")
	var apiKeys, relays, uris listFlag
	fs.Var(&apiKeys, "api-key", "accepted API key (bearer token); repeatable (prefer --api-key-file)")
	allowAnon := fs.Bool("allow-anonymous", false, "serve callers without an API key; only on a loopback --listen address")
	insecureAnon := fs.Bool("insecure-anonymous", false, "serve callers without an API key on any address, loopback or not: anyone who reaches it gets credentials")
	fs.Var(&relays, "relay", "relay listed to clients, location:host:udpPort:tcpPort (port 0: none); repeatable")
	fs.Var(&uris, "uri", "TURN URI for the JSON answer; repeatable (default: derived from --relay)")
	maxDur := fs.Duration("max-duration", auth.DefaultMaxDuration, "cap on the credential lifetime a client may ask for")
	tlsCert := fs.String("tls-cert", "", "TLS certificate file (PEM, chain after the leaf); with --tls-key serves HTTPS; re-read on SIGHUP")
	tlsKey := fs.String("tls-key", "", "TLS key file (PEM); re-read on SIGHUP")
	var poolMembers listFlag
	fs.Var(&poolMembers, "pool-member", "load document of a relay of the pool (http://host:9641/load), polled to list the pool healthy and least loaded first; repeatable")
	poolDiscover := fs.String("pool-discover", "", "find the pool's load documents in DNS at every poll: _metrics._tcp.<headless service> (SRV) or host:port (A/AAAA)")
	poolInterval := fs.Duration("pool-interval", pool.DefaultInterval, "time between polls of the pool")
	poolTimeout := fs.Duration("pool-timeout", pool.DefaultTimeout, "bound on one poll of a member; below --pool-interval")
	poolFailAfter := fs.Int("pool-fail-after", pool.DefaultFailAfter, "consecutive failed polls after which a relay leaves the lists (within fail-after x interval + timeout)")
	poolHysteresis := fs.Float64("pool-hysteresis", pool.DefaultHysteresis, "score margin by which a relay must beat the one listed before it to move ahead (-1: none)")
	poolZone := fs.String("pool-zone", "", "zone label whose relays are listed first (a JSON request's zone field wins)")
	metricsListen := fs.String("metrics-listen", "", "address of /metrics (what the service believes of each relay of the pool) and /healthz (empty: off)")
	tlsReload := fs.Duration("tls-reload-interval", 5*time.Second, "how often --tls-cert and --tls-key are checked for a change, which is loaded for new connections as SIGHUP does (0: SIGHUP only)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	allowReadable := fs.Bool(secretfile.AllowFlag, false, "read --secret-file, --api-key-file and --tls-key even when users other than their owner can read them (refused otherwise: chmod 600 them; root's 0640 and 0440 files are accepted)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: avedge-auth --secret-file F (--api-key-file F | --api-key K | --allow-anonymous | --insecure-anonymous) [--tls-cert F --tls-key F] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if len(apiKeys) > 0 {
		log.Warn(secretfile.CommandLineWarning("api-key", "api-key-file"))
	}
	// checkPrivate refuses a file of secrets others can read, or warns under --allow-readable-secrets.
	checkPrivate := func(flagName, path string) error {
		err := secretfile.Check(path)
		var exposed *secretfile.ExposedError
		if errors.As(err, &exposed) && *allowReadable {
			log.Warn("--" + flagName + ": " + exposed.Warning())
			return nil
		}
		if err != nil {
			return fmt.Errorf("--%s: %w", flagName, err)
		}
		return nil
	}
	if *secretFile == "" {
		return errors.New("--secret-file is required")
	}
	for _, f := range [][2]string{{"secret-file", *secretFile}, {"api-key-file", *apiKeyFile}, {"tls-key", *tlsKey}} {
		if f[1] != "" {
			if err := checkPrivate(f[0], f[1]); err != nil {
				return err
			}
		}
	}
	secrets, err := auth.LoadSecretsFile(*secretFile)
	if err != nil {
		return fmt.Errorf("--secret-file: %w", err)
	}
	ring := auth.NewKeyring(secrets...)
	if *apiKeyFile != "" {
		f, err := os.Open(*apiKeyFile)
		if err != nil {
			return fmt.Errorf("--api-key-file: %w", err)
		}
		keys, err := auth.ReadAPIKeys(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--api-key-file: %w", err)
		}
		if len(keys) == 0 {
			return fmt.Errorf("--api-key-file %s: no key", *apiKeyFile)
		}
		apiKeys = append(apiKeys, keys...)
	}
	var relayInfo []auth.RelayInfo
	for _, r := range relays {
		ri, err := auth.ParseRelay(r)
		if err != nil {
			return fmt.Errorf("--relay: %w", err)
		}
		relayInfo = append(relayInfo, ri)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return errors.New("--tls-cert and --tls-key: give both or neither")
	}
	var cert *auth.Certificate
	if *tlsCert != "" {
		if cert, err = auth.LoadCertificate(*tlsCert, *tlsKey); err != nil {
			return fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
	}
	var mon *pool.Monitor
	if len(poolMembers) > 0 || *poolDiscover != "" {
		mon, err = pool.NewMonitor(pool.MonitorConfig{URLs: poolMembers, Discover: *poolDiscover, Interval: *poolInterval, Timeout: *poolTimeout,
			FailAfter: *poolFailAfter, Hysteresis: *poolHysteresis, Zone: *poolZone, Logger: log})
		if err != nil {
			return fmt.Errorf("--pool-member, --pool-discover: %w", err)
		}
	}
	var poolFunc func(location, zone string) []auth.RelayInfo
	if mon != nil {
		poolFunc = mon.Relays
	}
	anonymous := *allowAnon || *insecureAnon
	svc, err := auth.NewService(auth.ServiceConfig{
		Keyring:        ring,
		Relays:         relayInfo,
		Pool:           poolFunc,
		URIs:           uris,
		MaxDuration:    *maxDur,
		APIKeys:        apiKeys,
		AllowAnonymous: anonymous,
		Logger:         log,
	})
	switch {
	case errors.Is(err, auth.ErrNoAPIKeys):
		return errors.New("--api-key-file or --api-key is required (or --allow-anonymous on a loopback address)")
	case errors.Is(err, auth.ErrBadDuration):
		return fmt.Errorf("--max-duration: %w", err)
	case errors.Is(err, auth.ErrBadAPIKey):
		return fmt.Errorf("--api-key: %w", err)
	case err != nil:
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if anonymous {
		err := auth.CheckAnonymousListen(ln.Addr())
		switch {
		case err != nil && !*insecureAnon:
			ln.Close()
			return fmt.Errorf("--allow-anonymous on --listen=%s, which is not a loopback address: anyone who reaches it would get credentials; "+
				"give --api-key-file, listen on loopback, or force it with --insecure-anonymous", *listen)
		case err != nil:
			log.Warn("anonymous credential service on a non-loopback address (--insecure-anonymous): anyone who reaches it gets credentials", "addr", ln.Addr().String())
		}
	}
	if cert == nil {
		if ap, ok := ln.Addr().(*net.TCPAddr); !ok || !ap.IP.IsLoopback() {
			log.Warn("serving without TLS on a non-loopback address: API keys and credentials cross the network in clear; give --tls-cert and --tls-key", "addr", ln.Addr().String())
		}
	}
	srv := &http.Server{
		Handler:           svc,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	if cert != nil {
		srv.TLSConfig = cert.TLSConfig()
	}
	go func() {
		if cert != nil {
			serveErr <- srv.ServeTLS(ln, "", "")
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()
	if mon != nil {
		// One round before the ready callback, so the first answers already list the pool
		// by load; then every --pool-interval.
		mon.Poll(ctx)
		pctx, cancel := context.WithCancel(ctx)
		polled := make(chan struct{})
		go func() { defer close(polled); mon.Run(pctx) }()
		defer func() { cancel(); <-polled }()
	}
	if *metricsListen != "" {
		stopMetrics, err := serveMetrics(*metricsListen, mon, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer stopMetrics()
	}
	log.Info("serving credentials", append([]any{"addr", ln.Addr().String(), "tls", cert != nil, "keys", len(secrets), "relays", len(relayInfo), "anonymous", anonymous}, certAttrs(cert)...)...)
	if ready != nil {
		ready(ln.Addr())
	}
	var poll <-chan time.Time
	if cert != nil && *tlsReload > 0 {
		t := time.NewTicker(*tlsReload)
		defer t.Stop()
		poll = t.C
	}
	// reloadCert re-reads the pair with load (Reload, or ReloadIfChanged for the poll) and logs
	// the outcome, prefix saying what caused it.
	reloadCert := func(prefix string, load func() (bool, error)) {
		err := checkPrivate("tls-key", *tlsKey)
		tried := true
		if err == nil {
			tried, err = load()
		}
		switch {
		case !tried:
		case err != nil:
			log.Error(prefix+"TLS certificate not reloaded; keeping the current pair", append([]any{"err", err, "tls-cert", *tlsCert, "tls-key", *tlsKey}, certAttrs(cert)...)...)
		default:
			log.Info(prefix+"TLS certificate reloaded", certAttrs(cert)...)
		}
	}
	for {
		select {
		case err := <-serveErr:
			return fmt.Errorf("serve: %w", err)
		case <-poll:
			reloadCert("TLS files changed: ", cert.ReloadIfChanged)
		case <-reload:
			err := checkPrivate("secret-file", *secretFile)
			if err == nil {
				err = ring.LoadFile(*secretFile)
			}
			if err != nil {
				log.Error("secrets not reloaded; keeping the current ones", "err", err)
			} else {
				newest, _ := ring.Newest()
				log.Info("secrets reloaded", "keys", len(ring.Secrets()), "newest", newest.ID)
			}
			if cert != nil {
				reloadCert("", func() (bool, error) { return true, cert.Reload() })
			}
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve: %w", err)
			}
			return nil
		}
	}
}

// certAttrs describes the pair cert serves, for the log ("" when not serving TLS).
func certAttrs(cert *auth.Certificate) []any {
	if cert == nil {
		return nil
	}
	leaf := cert.Current().Leaf
	return []any{"subject", leaf.Subject.String(), "dns", leaf.DNSNames, "notAfter", leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// serveMetrics serves /metrics (the pool collector when mon is set, the Go runtime's
// otherwise too) and /healthz on addr; the function it returns stops it.
func serveMetrics(addr string, mon *pool.Monitor, log *slog.Logger) (func(), error) {
	reg := prometheus.NewRegistry()
	if mon != nil {
		if err := reg.Register(metrics.NewPoolCollector(mon)); err != nil {
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	hs := &http.Server{Handler: metrics.Handler(reg, nil), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		<-done
	}, nil
}
