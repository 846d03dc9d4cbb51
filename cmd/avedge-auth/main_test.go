package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/pool"

	"github.com/avedge/avedge/internal/testcert"
)

// syncBuffer is a log sink safe for the server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunFlagErrors(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 s1\n")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no secret file", args: []string{"--allow-anonymous"}, wantErr: "--secret-file"},
		{name: "bad secret file", args: []string{"--secret-file", writeFile(t, "bad", "a b c\n"), "--allow-anonymous"}, wantErr: "--secret-file"},
		{name: "no api key", args: []string{"--secret-file", secrets}, wantErr: "--api-key-file or --api-key"},
		{name: "empty api key file", args: []string{"--secret-file", secrets, "--api-key-file", writeFile(t, "keys", "# none\n")}, wantErr: "--api-key-file"},
		{name: "bad relay", args: []string{"--secret-file", secrets, "--allow-anonymous", "--relay", "moon:h:1:2"}, wantErr: "--relay"},
		{name: "bad listen", args: []string{"--secret-file", secrets, "--allow-anonymous", "--listen", "256.0.0.1:x"}, wantErr: "--listen"},
		{name: "half tls", args: []string{"--secret-file", secrets, "--allow-anonymous", "--tls-cert", "c.pem"}, wantErr: "--tls-cert and --tls-key"},
		{name: "bad tls pair", args: []string{"--secret-file", secrets, "--allow-anonymous", "--tls-cert", secrets, "--tls-key", secrets}, wantErr: "--tls-cert, --tls-key"},
		{name: "bad log level", args: []string{"--secret-file", secrets, "--allow-anonymous", "--log-level", "loud"}, wantErr: "--log-level"},
		{name: "bad pool member", args: []string{"--secret-file", secrets, "--allow-anonymous", "--pool-member", "10.0.0.1:9641"}, wantErr: "--pool-member"},
		{name: "tiny max duration", args: []string{"--secret-file", secrets, "--allow-anonymous", "--max-duration", "1s"}, wantErr: "--max-duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut syncBuffer
			err := run(context.Background(), tt.args, &errOut, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	t.Run("help", func(t *testing.T) {
		var out syncBuffer
		if err := run(context.Background(), []string{"--help"}, &out, nil, nil); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("err = %v", err)
		}
		for _, f := range []string{"-listen", "(default \"127.0.0.1:8443\")", "-max-duration", "(default 8h0m0s)", "-allow-anonymous", "-insecure-anonymous", "-relay", "-tls-cert", "-allow-readable-secrets"} {
			if !strings.Contains(out.String(), f) {
				t.Errorf("help lacks %q", f)
			}
		}
	})
}

// TestRunServesReloadsAndStops runs the command on loopback: it serves JSON
// credentials with the API key, re-reads the secrets on reload, and returns
// nil once its context is cancelled.
func TestRunServesReloadsAndStops(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 first-secret\n")
	keys := writeFile(t, "keys", "key-a\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan os.Signal) // unbuffered: a send completes when run takes it
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	var logs syncBuffer
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--secret-file", secrets, "--api-key-file", keys,
			"--relay", "internet:edge.example.com:3478:443"}, &logs, reload, func(a net.Addr) { addrc <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("run returned early: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(key string) (int, auth.JSONCredentials) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr.String()+"/credentials?username=alice&ttl=60", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var c auth.JSONCredentials
		if resp.StatusCode == 200 {
			if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, c
	}
	if s, _ := get(""); s != http.StatusUnauthorized {
		t.Fatalf("no key: status %d", s)
	}
	s, c := get("key-a")
	if s != 200 || !strings.HasPrefix(c.Username, "mras1:k1:") || c.TTL != 60 || len(c.URIs) != 2 {
		t.Fatalf("status %d, credentials %+v", s, c)
	}

	// Rotate: new key first. run handles one reload per loop turn, so the
	// second send completes only after the first reload is done.
	if err := os.WriteFile(secrets, []byte("k2 second-secret\nk1 first-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- syscall.SIGHUP
	reload <- syscall.SIGHUP
	if _, c = get("key-a"); !strings.HasPrefix(c.Username, "mras1:k2:") {
		t.Fatalf("after reload, username %q does not name k2\n%s", c.Username, logs.String())
	}

	// A broken file keeps the current secrets.
	if err := os.WriteFile(secrets, []byte("bad line with fields\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- syscall.SIGHUP
	reload <- syscall.SIGHUP
	if _, c = get("key-a"); !strings.HasPrefix(c.Username, "mras1:k2:") {
		t.Fatalf("after a failed reload, username %q", c.Username)
	}

	// A file every user can read keeps the current secrets, and says why.
	if err := os.WriteFile(secrets, []byte("k3 third-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secrets, 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- syscall.SIGHUP
	reload <- syscall.SIGHUP
	if _, c = get("key-a"); !strings.HasPrefix(c.Username, "mras1:k2:") {
		t.Fatalf("after a reload of a 0644 file, username %q", c.Username)
	}
	if want := "--secret-file: " + secrets + " holds secrets and is mode 0644"; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, logs.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("logs lack shutdown:\n%s", logs.String())
	}
}

// serve runs the command with args until it serves, and returns what it logged then; it stops
// it when the test ends.
func serve(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), &logs, nil, func(net.Addr) { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run returned early: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	return logs.String()
}

// TestReadableSecretFiles checks --secret-file, --api-key-file and --tls-key at mode 0644:
// refused with a message that names the flag, the file, its mode and both fixes; served, with a
// warning, under --allow-readable-secrets.
func TestReadableSecretFiles(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 s1\n")
	keys := writeFile(t, "keys", "key-a\n")
	_, crt, key := testPair(t, t.TempDir(), "c")
	for _, f := range []struct{ flag, path string }{{"secret-file", secrets}, {"api-key-file", keys}, {"tls-key", key}} {
		t.Run(f.flag, func(t *testing.T) {
			if err := os.Chmod(f.path, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(f.path, 0o600)
			args := []string{"--secret-file", secrets, "--api-key-file", keys, "--tls-cert", crt, "--tls-key", key}
			// Cancelled before: were the file accepted, run would return nil at once.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), &syncBuffer{}, nil, nil)
			for _, want := range []string{"--" + f.flag + ": " + f.path + " holds secrets and is mode 0644", "every user of this host can read it",
				"chmod 600 " + f.path, "--allow-readable-secrets"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want it to say %q", err, want)
				}
			}
			logs := serve(t, append(args, "--allow-readable-secrets")...)
			if want := `level=WARN msg="--` + f.flag + ": " + f.path + ` holds secrets and is mode 0644`; !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		})
	}
}

// TestAPIKeyOnCommandLineWarned checks that --api-key is used, with a warning naming
// --api-key-file, and that --api-key-file alone draws no warning.
func TestAPIKeyOnCommandLineWarned(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 s1\n")
	logs := serve(t, "--secret-file", secrets, "--api-key", "key-a")
	if want := `level=WARN msg="--api-key is given on the command line, which every user of this host can read (ps, /proc/PID/cmdline): put it in a file named by --api-key-file instead"`; !strings.Contains(logs, want) {
		t.Errorf("logs lack %q:\n%s", want, logs)
	}
	logs = serve(t, "--secret-file", secrets, "--api-key-file", writeFile(t, "keys", "key-a\n"))
	if strings.Contains(logs, "level=WARN") {
		t.Errorf("a warning with the key in a 0600 file:\n%s", logs)
	}
}

// testPair writes a self-signed certificate for 127.0.0.1 named cn and its key as PEM files
// in dir and returns the certificate (for the client's pool) and the two paths.
func testPair(t *testing.T, dir, cn string) (*x509.Certificate, string, string) {
	t.Helper()
	p := testcert.New(t, testcert.Options{CommonName: cn})
	crt, k := p.Write(t, dir, cn)
	return p.Cert, crt, k
}

func copyTo(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startRun runs the command with args on a goroutine and returns the bound address, the
// logs, and a stop function that cancels it and returns run's result.
func startRun(t *testing.T, args []string, reload <-chan os.Signal) (net.Addr, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- run(ctx, args, logs, reload, func(a net.Addr) { addrc <- a }) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				runErr = errors.New("run did not return after cancel")
			}
		})
		return runErr
	}
	select {
	case a := <-addrc:
		t.Cleanup(func() { _ = stop() })
		return a, logs, stop
	case err := <-done:
		cancel()
		t.Fatalf("run returned early: %v\n%s", err, logs.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server not ready within 10s")
	}
	return nil, nil, nil
}

// TestRunTLS serves credentials over TLS, swaps the pair on reload (the next connection sees
// the new certificate while a connection opened before keeps working), and refuses a bad new
// pair, keeping the current one.
func TestRunTLS(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 first-secret\n")
	keys := writeFile(t, "keys", "key-a\n")
	dir := t.TempDir()
	certA, crtA, keyA := testPair(t, dir, "cert-a")
	certB, crtB, keyB := testPair(t, dir, "cert-b")
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyTo(t, crtA, crt)
	copyTo(t, keyA, key)
	pool := x509.NewCertPool()
	pool.AddCert(certA)
	pool.AddCert(certB)

	reload := make(chan os.Signal) // unbuffered: the second of two sends completes after the first reload
	addr, logs, stop := startRun(t, []string{"--listen", "127.0.0.1:0", "--secret-file", secrets, "--api-key-file", keys,
		"--tls-cert", crt, "--tls-key", key, "--relay", "internet:edge.example.com:3478:443", "--tls-reload-interval", "0"}, reload)
	newClient := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxConnsPerHost: 1}}
	}
	// get fetches a credential and returns the certificate the server presented on the
	// connection used and whether that connection was reused.
	get := func(c *http.Client) (cn string, reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addr.String()+"/credentials?username=alice&ttl=60", nil)
		req.Header.Set("Authorization", "Bearer key-a")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET over TLS: %v\n%s", err, logs.String())
		}
		defer resp.Body.Close()
		var cred auth.JSONCredentials
		if err := json.NewDecoder(resp.Body).Decode(&cred); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(cred.Username, "mras1:k1:") {
			t.Fatalf("status %d, credentials %+v, err %v", resp.StatusCode, cred, err)
		}
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
			t.Fatal("answer did not come over TLS")
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName, reused
	}
	hup := func() {
		reload <- syscall.SIGHUP
		reload <- syscall.SIGHUP
	}

	old := newClient()
	if cn, _ := get(old); cn != "cert-a" {
		t.Fatalf("server presented %q, want cert-a", cn)
	}
	// Plain HTTP to the TLS port gets no credential.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr.String() + "/credentials?username=alice"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP got 200 from the TLS listener")
		}
	}

	copyTo(t, crtB, crt)
	copyTo(t, keyB, key)
	hup()
	if cn, reused := get(newClient()); cn != "cert-b" || reused {
		t.Fatalf("new connection after reload: certificate %q (reused %v), want cert-b on a new connection\n%s", cn, reused, logs.String())
	}
	if cn, reused := get(old); cn != "cert-a" || !reused {
		t.Fatalf("connection opened before the reload: certificate %q reused %v, want it kept up with cert-a", cn, reused)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") || !strings.Contains(logs.String(), `subject="CN=cert-b"`) {
		t.Errorf("logs lack the reload:\n%s", logs.String())
	}

	// A bad new pair (B's certificate with A's key) is refused; B stays.
	copyTo(t, keyA, key)
	hup()
	if cn, _ := get(newClient()); cn != "cert-b" {
		t.Fatalf("after a bad pair, server presented %q, want cert-b kept", cn)
	}
	if !strings.Contains(logs.String(), "TLS certificate not reloaded; keeping the current pair") {
		t.Errorf("logs do not say the bad pair was refused:\n%s", logs.String())
	}

	// A new key every user can read is refused; B stays.
	copyTo(t, crtA, crt)
	copyTo(t, keyA, key)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	if cn, _ := get(newClient()); cn != "cert-b" {
		t.Fatalf("after a 0644 key, server presented %q, want cert-b kept", cn)
	}
	if want := "--tls-key: " + key + " holds secrets and is mode 0644"; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, logs.String())
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestRunTLSPoll: with --tls-reload-interval the pair's files are polled, and a swap is
// loaded with no SIGHUP; a bad pair is refused once, the current pair kept.
func TestRunTLSPoll(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 first-secret\n")
	dir := t.TempDir()
	certA, crtA, keyA := testPair(t, dir, "poll-a")
	certB, crtB, keyB := testPair(t, dir, "poll-b")
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyTo(t, crtA, crt)
	copyTo(t, keyA, key)
	pool := x509.NewCertPool()
	pool.AddCert(certA)
	pool.AddCert(certB)
	addr, logs, stop := startRun(t, []string{"--listen", "127.0.0.1:0", "--secret-file", secrets, "--allow-anonymous",
		"--tls-cert", crt, "--tls-key", key, "--tls-reload-interval", "20ms"}, nil)
	served := func() string {
		c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	// logged waits for the daemon's log to contain want, checking it as it grows.
	logged := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for !strings.Contains(logs.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q within 10s:\n%s", want, logs.String())
			}
			<-tick.C
		}
	}
	if cn := served(); cn != "poll-a" {
		t.Fatalf("served %q, want poll-a", cn)
	}
	copyTo(t, crtB, crt)
	copyTo(t, keyB, key)
	logged(`msg="TLS files changed: TLS certificate reloaded" subject="CN=poll-b"`)
	if cn := served(); cn != "poll-b" {
		t.Fatalf("after the poll, served %q, want poll-b", cn)
	}
	copyTo(t, keyA, key) // B's certificate with A's key
	logged("TLS files changed: TLS certificate not reloaded; keeping the current pair")
	if cn := served(); cn != "poll-b" {
		t.Fatalf("after a bad pair, served %q, want poll-b kept", cn)
	}
	if n := strings.Count(logs.String(), "not reloaded"); n != 1 {
		t.Errorf("the bad pair was logged %d times, want once", n)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestRunAnonymous: without an API key the service listens only on loopback, unless forced
// with --insecure-anonymous. Run it in a network namespace (0.0.0.0 is bound).
func TestRunAnonymous(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 s1\n")
	for _, listen := range []string{"0.0.0.0:0", "[::]:0"} {
		t.Run("refused on "+listen, func(t *testing.T) {
			err := run(context.Background(), []string{"--secret-file", secrets, "--allow-anonymous", "--listen", listen}, io.Discard, nil, nil)
			if err == nil || !strings.Contains(err.Error(), "--insecure-anonymous") || !strings.Contains(err.Error(), "not a loopback address") {
				t.Fatalf("err = %v, want a refusal naming --insecure-anonymous", err)
			}
		})
	}
	anonGet := func(t *testing.T, addr net.Addr) {
		t.Helper()
		_, port, _ := net.SplitHostPort(addr.String())
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://127.0.0.1:" + port + "/credentials?username=alice")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("anonymous request: status %d", resp.StatusCode)
		}
	}
	t.Run("allowed on loopback", func(t *testing.T) {
		addr, _, stop := startRun(t, []string{"--secret-file", secrets, "--allow-anonymous", "--listen", "127.0.0.1:0"}, nil)
		anonGet(t, addr)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("forced with --insecure-anonymous", func(t *testing.T) {
		addr, logs, stop := startRun(t, []string{"--secret-file", secrets, "--insecure-anonymous", "--listen", "0.0.0.0:0"}, nil)
		anonGet(t, addr)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "--insecure-anonymous") {
			t.Errorf("no warning about --insecure-anonymous:\n%s", logs.String())
		}
	})
}

// TestRunListsThePool: with --pool-member, the JSON answer lists the relays of the pool's
// load documents, least loaded first, and leaves out a draining one.
func TestRunListsThePool(t *testing.T) {
	doc := func(host string, free int, draining bool) pool.Load {
		return pool.Load{Instance: host, Healthy: true, Draining: draining, PortsTotal: 100, PortsFree: free,
			Relays: []pool.Endpoint{{Location: auth.LocationInternet, HostName: host, UDPPort: 3478}}}
	}
	var servers []string
	for _, l := range []pool.Load{doc("busy.example.com", 10, false), doc("idle.example.com", 100, false), doc("drain.example.com", 100, true)} {
		hs := httptest.NewServer(pool.Handler(func() pool.Load { return l }))
		t.Cleanup(hs.Close)
		servers = append(servers, "--pool-member", hs.URL+"/load")
	}
	secrets := writeFile(t, "secrets", "k1 first-secret\n")
	addr, _, stop := startRun(t, append([]string{"--listen", "127.0.0.1:0", "--secret-file", secrets, "--allow-anonymous", "--relay", "internet:fallback.example.com:3478:0"}, servers...), nil)
	defer stop()
	res, err := http.Get("http://" + addr.String() + "/credentials?username=alice")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var c auth.JSONCredentials
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := []string{"turn:idle.example.com:3478?transport=udp", "turn:busy.example.com:3478?transport=udp"}
	if strings.Join(c.URIs, " ") != strings.Join(want, " ") {
		t.Fatalf("uris %q, want %q", c.URIs, want)
	}
}
