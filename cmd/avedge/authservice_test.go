package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"

	"github.com/avedge/avedge/internal/testcert"
)

// writePair writes a self-signed certificate named cn (for ips and dns) and its key as PEM
// files, mode 0600, into dir, and returns the certificate (for a client's pool) and the paths.
func writePair(t *testing.T, dir, cn string, ips []net.IP, dns []string) (*x509.Certificate, string, string) {
	t.Helper()
	if ips == nil {
		ips = []net.IP{} // only the names given: not testcert's default 127.0.0.1
	}
	p := testcert.New(t, testcert.Options{CommonName: cn, IPs: ips, DNS: dns})
	crt, k := p.Write(t, dir, cn)
	return p.Cert, crt, k
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b), 0o600)
}

// authAddr is the credential service's address as the daemon logged it.
func (s *started) authAddr(t *testing.T, tls bool) string {
	t.Helper()
	m := regexp.MustCompile(`msg="credential service listening" addr=(\S+) tls=(\w+)`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("the credential service did not log its address:\n%s", s.stderr.String())
	}
	if want := map[bool]string{true: "true", false: "false"}[tls]; m[2] != want {
		t.Fatalf("credential service logged tls=%s, want %s", m[2], want)
	}
	return m[1]
}

// hup sends SIGHUP to the daemon (this process: run has it on signal.Notify) and waits for
// the reload's TLS line (want), which reloadTLS logs last; it returns what the reload logged.
func (s *started) hup(t *testing.T, want string) string {
	t.Helper()
	from := len(s.stderr.String())
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logged, ok := s.stderr.waitFor(from, want, 10*time.Second)
	if !ok {
		t.Fatalf("SIGHUP: no %q within 10s; logged:\n%s", want, logged)
	}
	return logged
}

// TestAuthServiceTLS serves the built-in credential service over TLS (auth-tls-cert,
// auth-tls-key): a credential over HTTPS and none over plain HTTP; on SIGHUP a new pair serves
// the next connection while a connection opened before keeps its pair; a bad pair, or a key
// file every user can read, is refused and the current pair kept, while the secrets are
// reloaded all the same.
func TestAuthServiceTLS(t *testing.T) {
	dir := t.TempDir()
	secrets, keys := filepath.Join(dir, "secrets"), filepath.Join(dir, "api-keys")
	writeFile(t, secrets, "k1 0123456789abcdef0123456789abcdef\n", 0o600)
	writeFile(t, keys, "key-a\n", 0o600)
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	certA, crtA, keyA := writePair(t, dir, "cert-a", loop, nil)
	certB, crtB, keyB := writePair(t, dir, "cert-b", loop, nil)
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyFile(t, crtA, crt)
	copyFile(t, keyA, key)
	pool := x509.NewCertPool()
	pool.AddCert(certA)
	pool.AddCert(certB)

	s := start(t, "--static-auth-secret-file", secrets, "--auth-api-key-file", keys, "--auth-tls-cert", crt, "--auth-tls-key", key)
	addr := s.authAddr(t, true)
	if strings.Contains(s.stderr.String(), "without TLS") {
		t.Errorf("a warning about plain HTTP while serving TLS:\n%s", s.stderr.String())
	}
	newClient := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxConnsPerHost: 1}}
	}
	// get fetches a credential, checks that the newest secret is keyID, and returns the
	// certificate the service presented on the connection used and whether it was reused.
	get := func(c *http.Client, keyID string) (cn string, reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addr+"/credentials?username=alice&ttl=60", nil)
		req.Header.Set("Authorization", "Bearer key-a")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET over TLS: %v\n%s", err, s.stderr.String())
		}
		defer resp.Body.Close()
		var cred auth.JSONCredentials
		if err := json.NewDecoder(resp.Body).Decode(&cred); err != nil || resp.StatusCode != 200 || !strings.HasPrefix(cred.Username, "mras1:"+keyID+":") {
			t.Fatalf("status %d, credentials %+v, err %v; want a credential of key %s", resp.StatusCode, cred, err, keyID)
		}
		if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
			t.Fatal("answer did not come over TLS")
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName, reused
	}

	old := newClient()
	if cn, _ := get(old, "k1"); cn != "cert-a" {
		t.Fatalf("service presented %q, want cert-a", cn)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/credentials?username=alice"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP got 200 from the TLS listener")
		}
	}

	t.Run("new pair on SIGHUP", func(t *testing.T) {
		copyFile(t, crtB, crt)
		copyFile(t, keyB, key)
		logged := s.hup(t, "TLS certificate reloaded")
		if !strings.Contains(logged, `subject="CN=cert-b"`) || !strings.Contains(logged, "SIGHUP: reloaded secrets") {
			t.Errorf("reload logged %q: want cert-b named and the secrets reloaded too", logged)
		}
		if cn, reused := get(newClient(), "k1"); cn != "cert-b" || reused {
			t.Fatalf("new connection after reload: certificate %q (reused %v), want cert-b on a new connection", cn, reused)
		}
		if cn, reused := get(old, "k1"); cn != "cert-a" || !reused {
			t.Fatalf("connection opened before the reload: certificate %q reused %v, want it kept up with cert-a", cn, reused)
		}
	})

	t.Run("bad pair refused, secrets reloaded", func(t *testing.T) {
		copyFile(t, keyA, key) // B's certificate with A's key
		writeFile(t, secrets, "k2 abcdef0123456789abcdef0123456789\n", 0o600)
		logged := s.hup(t, "SIGHUP: TLS certificate not reloaded; keeping the current pair")
		if !strings.Contains(logged, "private key does not match public key") || !strings.Contains(logged, "SIGHUP: reloaded secrets") ||
			!strings.Contains(logged, "level=ERROR") {
			t.Errorf("reload logged %q: want an error saying why, and the secrets reloaded", logged)
		}
		if cn, _ := get(newClient(), "k2"); cn != "cert-b" {
			t.Fatalf("after a bad pair, service presented %q, want cert-b kept", cn)
		}
	})

	t.Run("key others can read refused", func(t *testing.T) {
		copyFile(t, crtA, crt)
		copyFile(t, keyA, key)
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		logged := s.hup(t, "SIGHUP: TLS certificate not reloaded; keeping the current pair")
		if want := "auth-tls-key: " + key + " holds secrets and is mode 0644"; !strings.Contains(logged, want) {
			t.Errorf("reload logged %q: want %q", logged, want)
		}
		if cn, _ := get(newClient(), "k2"); cn != "cert-b" {
			t.Fatalf("after a 0644 key, service presented %q, want cert-b kept", cn)
		}
	})
	s.stop(t)
}

// TestAuthServiceCurlLine runs the curl line the daemon prints for the built-in service over
// TLS with a generated API key: https, verifying against the certificate file it serves
// (--cacert, never -k), with --resolve when the certificate names a host rather than the
// address. The line is run with curl where it is installed.
func TestAuthServiceCurlLine(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ips     []net.IP
		dns     []string
		resolve bool
	}{
		{"certificate names the address", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, false},
		{"certificate names localhost", nil, []string{"localhost"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, crt, key := writePair(t, dir, "svc", tc.ips, tc.dns)
			s := start(t, "--auth-tls-cert", crt, "--auth-tls-key", key)
			addr := s.authAddr(t, true)
			m := regexp.MustCompile(`curl -s --cacert '([^']+)'( --resolve '[^']+')? -H 'Authorization: Bearer ([0-9a-f]+)' '(https://[^']+)'`).FindStringSubmatch(s.stdout.String())
			if m == nil {
				t.Fatalf("no https curl line printed:\n%s", s.stdout.String())
			}
			if m[1] != crt || strings.Contains(m[0], " -k") {
				t.Errorf("curl line %q: want --cacert %s and no -k", m[0], crt)
			}
			_, port, _ := net.SplitHostPort(addr)
			if want := " --resolve 'localhost:" + port + ":127.0.0.1'"; tc.resolve && m[2] != want {
				t.Errorf("curl line %q: want %q", m[0], want)
			}
			if !tc.resolve && (m[2] != "" || !strings.HasPrefix(m[4], "https://"+addr+"/")) {
				t.Errorf("curl line %q: want https://%s and no --resolve", m[0], addr)
			}
			if _, err := exec.LookPath("curl"); err != nil {
				if os.Getenv("AVEDGE_REQUIRE_INTEROP") != "" {
					t.Fatal("curl not installed (AVEDGE_REQUIRE_INTEROP is set)")
				}
				t.Skip("curl not installed")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "sh", "-c", m[0]).CombinedOutput() // as a user pastes it
			var cred auth.JSONCredentials
			if err != nil || json.Unmarshal(out, &cred) != nil || cred.Username == "" || cred.Password == "" {
				t.Fatalf("the printed curl line failed (%v):\n%s", err, out)
			}
		})
	}
}

// TestAuthServiceAnonymous: without an API key (auth-allow-anonymous) the built-in service
// serves only on a loopback address; elsewhere the daemon refuses to start with an error that
// names auth-insecure-anonymous, which forces it (with warnings). Run it in a network
// namespace: 0.0.0.0 is bound.
func TestAuthServiceAnonymous(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "[::]:0"} {
		t.Run("refused on "+listen, func(t *testing.T) {
			var stderr lockedBuffer
			// Cancelled before: were it accepted, the daemon would stop at once with exit 0.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			code := run(ctx, []string{"--data-path", "epoll", "--listening-port", "0", "--metrics-listen", "", "--auth-listen", listen, "--auth-allow-anonymous"},
				&lockedBuffer{}, &stderr, nil)
			if code != 2 || !strings.Contains(stderr.String(), "auth-insecure-anonymous") || !strings.Contains(stderr.String(), "not a loopback address") {
				t.Fatalf("exit %d, want 2 with a refusal naming auth-insecure-anonymous:\n%s", code, stderr.String())
			}
		})
	}
	anonGet := func(t *testing.T, addr string) {
		t.Helper()
		_, port, _ := net.SplitHostPort(addr)
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
		s := start(t, "--auth-allow-anonymous")
		anonGet(t, s.authAddr(t, false))
		if logged := s.stderr.String(); strings.Contains(logged, "auth-insecure-anonymous") || strings.Contains(logged, "without TLS") {
			t.Errorf("warnings on loopback:\n%s", logged)
		}
	})
	t.Run("forced with auth-insecure-anonymous", func(t *testing.T) {
		t.Setenv("TMPDIR", t.TempDir()) // off loopback, the credentials go to a file there
		s := start(t, "--auth-insecure-anonymous", "--auth-listen", "0.0.0.0:0")
		anonGet(t, s.authAddr(t, false))
		logged := s.stderr.String()
		for _, want := range []string{`level=WARN msg="auth-insecure-anonymous: the credential service on 0.0.0.0:0`,
			`level=WARN msg="credential service without TLS on a non-loopback address`} {
			if !strings.Contains(logged, want) {
				t.Errorf("log lacks %q:\n%s", want, logged)
			}
		}
	})
}

// TestReloadTLSNamesChangedFiles: SIGHUP re-reads the pair from the files the service
// started with; a configuration that now names other files draws a warning that a restart is
// needed, and the pair is still re-read from the old ones.
func TestReloadTLSNamesChangedFiles(t *testing.T) {
	dir := t.TempDir()
	_, crt, key := writePair(t, dir, "svc", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	_, otherCrt, otherKey := writePair(t, dir, "other", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	o, err := config.Parse([]string{"--auth-tls-cert", crt, "--auth-tls-key", key}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		changed bool
	}{
		{"same files", []string{"--auth-tls-cert", crt, "--auth-tls-key", key}, false},
		{"other files", []string{"--auth-tls-cert", otherCrt, "--auth-tls-key", otherKey}, true},
		{"TLS turned off", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			no, err := config.Parse(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var logged lockedBuffer
			reloadTLS(newLogger(&logged, "text", "info"), st, &no)
			if got := strings.Contains(logged.String(), "auth-tls-cert or auth-tls-key changed"); got != tc.changed {
				t.Errorf("logged %q: want a warning about changed files %v", logged.String(), tc.changed)
			}
			if !strings.Contains(logged.String(), `msg="SIGHUP: TLS certificate reloaded" pair="credential service" subject="CN=svc"`) {
				t.Errorf("logged %q: want the pair re-read from the files it started with", logged.String())
			}
		})
	}
}
