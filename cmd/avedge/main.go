// Command avedge is the audio/video edge relay: STUN and TURN on UDP, TCP and TLS, relay
// ports from the edge range, time-limited shared-secret credentials, Prometheus metrics.
//
// With no flags it runs the embedded default: everything on loopback, a generated secret,
// and a credential printed so that a client can use the relay at once. A credential or secret
// is printed only while every listener is on loopback (see announce).
//
// The built-in credential service (auth-listen) speaks HTTPS with auth-tls-cert and
// auth-tls-key; SIGHUP re-reads that pair and the TURN TLS listeners' (cert, pkey), and so
// does a poll of their files every tls-reload-interval (certs.go). Without an API key it serves only
// on loopback unless auth-insecure-anonymous.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/pool"
	"github.com/avedge/avedge/relay"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run is main without the process: it returns the exit code. ready, if not nil, receives the
// started server; cancelling ctx acts as SIGINT (tests use both).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- *relay.Server) int {
	opts, err := config.Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "avedge: %v\n", err)
		return 2
	}
	st, err := opts.Build()
	if err != nil {
		fmt.Fprintf(stderr, "avedge: %v\n", err)
		return 2
	}
	log := newLogger(stderr, opts.LogFormat, opts.LogLevel)
	for _, w := range st.Warnings {
		log.Warn(w)
	}
	sizeGOMAXPROCS(st.Relay.Workers)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, metrics.Options{Version: version, PionVersion: pionVersion()})
	if err != nil {
		fmt.Fprintf(stderr, "avedge: metrics: %v\n", err)
		return 1
	}
	observeTLS(st, m)
	rc := st.Relay
	rc.Metrics = m
	rc.Logger = log
	pr, err := newPoolRole(st.Pool, log)
	if err != nil {
		fmt.Fprintf(stderr, "avedge: %v\n", err)
		return 2
	}
	rc.Redirect = pr.redirect
	srv, err := relay.New(rc)
	if err != nil {
		fmt.Fprintf(stderr, "avedge: %v\n", err)
		return 1
	}
	if err := pr.start(srv, rc, reg); err != nil {
		fmt.Fprintf(stderr, "avedge: pool: %v\n", err)
		_ = srv.Close()
		return 1
	}
	defer pr.stop()
	if rc.Peers.AllowLoopback {
		log.Warn("loopback peers are allowed (all-loopback setup); pass --allow-loopback-peers=false to refuse them")
	}

	endpoints := &httpServers{log: log}
	authAddr, err := endpoints.start(st, reg, m, srv, pr)
	if err != nil {
		fmt.Fprintf(stderr, "avedge: %v\n", err)
		endpoints.stop()
		_ = srv.Close()
		return 1
	}
	var reloading sync.Mutex // SIGHUP and POST /v1/reload, one at a time
	adm := newAdminAPI(st)
	reloadAll := func() error {
		reloading.Lock()
		defer reloading.Unlock()
		return errors.Join(reload(log, args, st, srv), adm.reload(log))
	}
	if err := adm.start(endpoints, srv, reloadAll); err != nil {
		fmt.Fprintf(stderr, "avedge: %v\n", err)
		adm.close()
		endpoints.stop()
		_ = srv.Close()
		return 1
	}
	removeCredentials := announce(stdout, st, opts.PrintCredentials, srv.Addrs(), authAddr)
	defer removeCredentials()

	watcher := watchTLS(log, st, opts.TLSReloadInterval, opts.AllowReadableSecrets)
	defer watcher.stop()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if ready != nil {
		ready <- srv
	}
	waitAndStop(ctx, log, sigs, opts.DrainTimeout, func() { _ = reloadAll() }, srv)
	adm.close()
	endpoints.stop()
	log.Info("stopped")
	return 0
}

// sizeGOMAXPROCS gives the program as many scheduler slots as there are cores beside the
// forwarding workers (workers; 0: relay.DefaultWorkers()), which keep theirs while they wait
// for packets (see relay.Config.IdleHold). The GOMAXPROCS environment variable wins.
func sizeGOMAXPROCS(workers int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if workers <= 0 {
		workers = relay.DefaultWorkers()
	}
	if want := runtime.NumCPU() + workers; runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
}

// httpServers are the HTTP endpoints run starts: metrics and the credential service.
type httpServers struct {
	log     *slog.Logger
	servers []*http.Server
	serving sync.WaitGroup // the Serve goroutines
}

// start serves the endpoints st turns on (the metrics listener with pr's GET /load) and returns the credential service's address as
// bound ("" when it is off). On error, what it started is still to be stopped.
func (h *httpServers) start(st *config.Settings, reg *prometheus.Registry, m *metrics.Metrics, srv *relay.Server, pr *poolRole) (authAddr string, err error) {
	if st.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/", metrics.Handler(reg, srv.Ready))
		mux.Handle("/load", pool.Handler(pr.load))
		if _, err := h.serve("metrics", "metrics-listen", st.MetricsListen, mux, nil); err != nil {
			return "", err
		}
	}
	if st.Service == nil {
		return "", nil
	}
	sc := *st.Service
	sc.Logger = h.log
	if len(sc.Relays) == 0 {
		sc.Relays = relaysOf(srv)
	}
	sc.OnRequest = m.CredentialRequest
	if pr.mon != nil {
		sc.Pool = pr.mon.Relays
	}
	svc, err := auth.NewService(sc)
	if err != nil {
		return "", err
	}
	var tc *tls.Config
	if st.AuthTLS != nil {
		tc = st.AuthTLS.TLSConfig()
	}
	addr, err := h.serve("credential service", "auth-listen", st.AuthListen, svc, tc, certAttrs(st.AuthTLS)...)
	if err != nil {
		return "", err
	}
	if ap, err := netip.ParseAddrPort(addr); tc == nil && (err != nil || !ap.Addr().Unmap().IsLoopback()) {
		h.log.Warn("credential service without TLS on a non-loopback address: API keys and credentials cross the network in clear; give auth-tls-cert and auth-tls-key", "addr", addr)
	}
	return addr, nil
}

// serve listens on addr (set by the option key) and serves handler there in a goroutine, over
// TLS when tc is not nil; it returns the address as bound. attrs are logged with the address.
func (h *httpServers) serve(name, key, addr string, handler http.Handler, tc *tls.Config, attrs ...any) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s: listen %s: %w (set --%s to another address, or empty to turn it off)", name, addr, err, key)
	}
	hs := &http.Server{Handler: handler, TLSConfig: tc, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelWarn)}
	h.servers = append(h.servers, hs)
	h.serving.Go(func() {
		var err error
		if tc != nil {
			err = hs.ServeTLS(ln, "", "") // the pair comes from tc.GetCertificate
		} else {
			err = hs.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error(name+" stopped", "err", err)
		}
	})
	h.log.Info(name+" listening", append([]any{"addr", ln.Addr().String(), "tls", tc != nil}, attrs...)...)
	return ln.Addr().String(), nil
}

// certAttrs describes the pair cert serves, for the log (nothing without TLS).
func certAttrs(cert *auth.Certificate) []any {
	if cert == nil {
		return nil
	}
	leaf := cert.Current().Leaf
	return []any{"subject", leaf.Subject.String(), "dns", leaf.DNSNames, "notAfter", leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// stop shuts the servers down (2 s each for requests in flight) and waits for their Serve
// goroutines.
func (h *httpServers) stop() {
	for _, hs := range h.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(ctx)
		cancel()
	}
	h.serving.Wait()
}

// waitAndStop serves until SIGINT (or ctx is cancelled: the same) closes srv, or SIGTERM
// drains it for up to drainTimeout; SIGHUP calls reload, also while draining. A second SIGTERM
// or SIGINT cuts the drain short. It returns once srv is closed, with the goroutines it
// started ended.
func waitAndStop(ctx context.Context, log *slog.Logger, sigs chan os.Signal, drainTimeout time.Duration, reload func(), srv *relay.Server) {
	stop := make(chan struct{})
	var watching sync.WaitGroup
	defer func() {
		close(stop)
		watching.Wait()
	}()
	watching.Go(func() {
		select {
		case <-ctx.Done():
			select {
			case sigs <- syscall.SIGINT:
			case <-stop:
			}
		case <-stop:
		}
	})
	for sig := range sigs {
		switch sig {
		case syscall.SIGHUP:
			reload()
			continue
		case syscall.SIGTERM:
			log.Info("SIGTERM: draining", "timeout", drainTimeout.String())
			dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			watching.Go(func() {
				for {
					select {
					case s := <-sigs:
						if s == syscall.SIGHUP {
							reload()
							continue
						}
						cancel()
					case <-dctx.Done():
					}
					return
				}
			})
			if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				log.Warn("shutdown", "err", err)
			}
			cancel()
		default:
			log.Info("SIGINT: closing")
			if err := srv.Close(); err != nil {
				log.Warn("close", "err", err)
			}
		}
		return
	}
}

// reload re-reads the configuration (flags and the --config file, with the secret and user
// files they name) and applies what can change while allocations live: shared secrets, static
// users and the peer policy. A configuration that does not load is refused (the error says
// why) and the running settings stay. (The revocations file is re-read by adminAPI.reload.)
// The TLS pairs are re-read on their own (reloadTLS), so that a
// pair caught half-renewed does not hold back a secret rotation, nor the reverse.
func reload(log *slog.Logger, args []string, st *config.Settings, srv *relay.Server) error {
	o, err := config.Parse(args, io.Discard)
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded, keeping the running one", "err", err)
		reloadTLS(log, st, nil)
		return err
	}
	defer reloadTLS(log, st, &o)
	// The pairs are the listeners', re-read by reloadTLS from the files they started with:
	// BuildForReload leaves them out.
	nst, err := o.BuildForReload()
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded, keeping the running one", "err", err)
		return err
	}
	for _, w := range nst.Warnings {
		log.Warn("SIGHUP: " + w)
	}
	if !nst.GeneratedSecret {
		st.Keyring.Set(nst.Keyring.Secrets())
	}
	st.Validator.SetUsers(nst.Users)
	srv.SetPeerPolicy(nst.Relay.Peers)
	log.Info("SIGHUP: reloaded secrets, users and peer policy", "secrets", len(st.Keyring.Secrets()), "users", len(nst.Users))
	return nil
}

// relaysOf lists this relay, as bound, for the credential service's default relay list.
func relaysOf(srv *relay.Server) []auth.RelayInfo {
	ri := auth.RelayInfo{Location: "internet"}
	for _, l := range srv.Addrs() {
		if l.ProxyProtocol { // reached through a load balancer, not at this address
			continue
		}
		if ri.HostName == "" {
			ri.HostName = l.Addr.Addr().String()
		}
		switch {
		case l.Network == relay.UDP && ri.UDPPort == 0:
			ri.UDPPort = int(l.Addr.Port())
		case l.Network == relay.TCP && ri.TCPPort == 0:
			ri.TCPPort = int(l.Addr.Port())
		}
	}
	return []auth.RelayInfo{ri}
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	ho := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

func pionVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/pion/turn/v5" {
			return d.Version
		}
	}
	return ""
}

// announce prints what lets a user try the relay at once: a credential (when the secret was
// generated, or print-credentials asks for one) and the credential service's generated API key
// (authAddr: the service as bound, "" when off). While a listener is not on loopback
// (st.NonLoopback) it prints neither: what a daemon prints ends up in logs others read, and the
// relay then serves more than this host. It writes them instead to a file only this user can
// read and prints where that file is. The function it returns removes the file (at exit: a
// generated secret dies with the process).
func announce(stdout io.Writer, st *config.Settings, printCreds *bool, addrs []relay.ListenerConfig, authAddr string) (remove func()) {
	var b strings.Builder
	if st.GeneratedSecret || (printCreds != nil && *printCreds) {
		printCredentials(&b, st, addrs)
	}
	if st.GeneratedAPIKey != "" && authAddr != "" {
		fmt.Fprintf(&b, "Credential service (MRAS XML on /mras, JSON on /credentials), API key generated for this run:\n  %s\n\n", serviceCurl(st, authAddr))
	}
	switch {
	case b.Len() == 0:
		return func() {}
	case st.NonLoopback == "":
		io.WriteString(stdout, b.String())
		return func() {}
	}
	path, err := writePrivate(b.String())
	if err != nil {
		fmt.Fprintf(stdout, "avedge is ready. Credentials are not printed: %s is not on loopback; writing them to a file failed (%v).\n"+
			"Give static-auth-secret-file (and auth-api-key-file) and mint credentials with avedge-token --secret-file FILE.\n", st.NonLoopback, err)
		return func() {}
	}
	fmt.Fprintf(stdout, "avedge is ready. Credentials are not printed: %s is not on loopback.\n"+
		"They are in %s, which only this user can read (removed when avedge stops).\n", st.NonLoopback, path)
	return func() { _ = os.Remove(path) }
}

// serviceCurl is a curl command line that fetches a credential from the credential service at
// addr with st's generated API key. Over TLS it trusts the certificate file the service serves
// (--cacert) instead of skipping verification (-k): the line carries the API key, and -k
// would teach sending it to whoever answers in the service's place. A self-signed certificate
// is its own trust anchor; a CA's leaf given as --cacert is trusted as well (curl 7.68 and
// later accept a partial chain). When the certificate names a host rather than the address
// the service is bound to, --resolve points that name at the address, so that curl checks the
// name the certificate carries.
func serviceCurl(st *config.Settings, addr string) string {
	if st.AuthTLS == nil {
		return fmt.Sprintf("curl -s -H 'Authorization: Bearer %s' 'http://%s/credentials?username=alice'", st.GeneratedAPIKey, addr)
	}
	cacert, err := filepath.Abs(st.AuthTLSCert)
	if err != nil {
		cacert = st.AuthTLSCert
	}
	host, port, _ := net.SplitHostPort(addr)
	target, resolve, note := addr, "", ""
	if leaf := st.AuthTLS.Current().Leaf; leaf.VerifyHostname(host) != nil {
		name := ""
		for _, n := range leaf.DNSNames {
			if !strings.HasPrefix(n, "*.") {
				name = n
				break
			}
		}
		if name != "" {
			ip := host
			if strings.Contains(host, ":") {
				ip = "[" + host + "]"
			}
			target, resolve = net.JoinHostPort(name, port), fmt.Sprintf(" --resolve '%s:%s:%s'", name, port, ip)
		} else {
			note = fmt.Sprintf("\n  (%s names neither %s nor a host name: curl refuses it; make a certificate that names one)", cacert, host)
		}
	}
	return fmt.Sprintf("curl -s --cacert '%s'%s -H 'Authorization: Bearer %s' 'https://%s/credentials?username=alice'%s",
		cacert, resolve, st.GeneratedAPIKey, target, note)
}

// writePrivate writes text to a new file in the temporary directory ($TMPDIR) that only this
// user can read (os.CreateTemp makes it mode 0600), and returns its name.
func writePrivate(text string) (string, error) {
	f, err := os.CreateTemp("", "avedge-credentials-*.txt")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// printCredentials prints a credential valid for 8 hours, an iceServers snippet and a
// turnutils_uclient command line that work against this relay (listening on addrs) as printed.
func printCredentials(w io.Writer, st *config.Settings, addrs []relay.ListenerConfig) {
	sec, ok := st.Keyring.Newest()
	if !ok {
		return
	}
	user, pass := auth.MintREST(sec.Value, "avedge-demo", time.Now().Add(8*time.Hour))
	var udp, tcp string
	for _, l := range addrs {
		switch {
		case l.ProxyProtocol: // reached through a load balancer, not at this address
		case l.Network == relay.UDP && udp == "":
			udp = l.Addr.String()
		case l.Network == relay.TCP && tcp == "":
			tcp = l.Addr.String()
		}
	}
	var urls []string
	if udp != "" {
		urls = append(urls, "turn:"+udp+"?transport=udp")
	}
	if tcp != "" {
		urls = append(urls, "turn:"+tcp+"?transport=tcp")
	}
	ice := map[string]any{"iceServers": []map[string]any{{"urls": urls, "username": user, "credential": pass}}}
	js, _ := json.MarshalIndent(ice, "", "  ")
	fmt.Fprintf(w, "avedge is ready. Credential (valid 8 hours, realm %q):\n  username: %s\n  password: %s\n", st.Relay.Realm, user, pass)
	if st.GeneratedSecret {
		fmt.Fprintf(w, "  shared secret (generated for this run): %s\n", sec.Value)
	}
	fmt.Fprintf(w, "\nWebRTC RTCPeerConnection configuration:\n%s\n", js)
	if udp != "" {
		host, port, _ := net.SplitHostPort(udp)
		fmt.Fprintf(w, "\nTry it with coturn's client (two clients relaying to each other through avedge):\n  turnutils_uclient -y -n 20 -m 1 -l 160 -u '%s' -w '%s' -p %s %s\n\n", user, pass, port, host)
	}
}
