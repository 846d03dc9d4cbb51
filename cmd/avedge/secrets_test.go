package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/relay"
)

// started is run going in a goroutine, until stop.
type started struct {
	stdout, stderr lockedBuffer
	cancel         context.CancelFunc
	done           chan int
	stopped        bool
}

// start runs the daemon with args (on loopback, ephemeral ports, data path epoll: auto would
// put the kernel fast path on the lo of the namespace the tests run in) until it is ready.
func start(t *testing.T, args ...string) *started {
	t.Helper()
	s := &started{done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	ready := make(chan *relay.Server, 1)
	args = append([]string{"--data-path", "epoll", "--listening-port", "0", "--metrics-listen", "127.0.0.1:0", "--auth-listen", "127.0.0.1:0",
		"--min-port", "32300", "--max-port", "32399", "--tls-reload-interval", "0"}, args...) // tests poll with pollTLS
	go func() { s.done <- run(ctx, args, &s.stdout, &s.stderr, ready) }()
	select {
	case <-ready:
	case code := <-s.done:
		t.Fatalf("exited %d: %s", code, s.stderr.String())
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("not ready in 10s")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop interrupts the daemon and waits for its exit (once: later calls return at once).
func (s *started) stop(t *testing.T) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	s.cancel()
	select {
	case code := <-s.done:
		if code != 0 {
			t.Errorf("exit %d after interrupt", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop within 15s of the interrupt")
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSecretWarningsLogged starts the daemon with a shared secret on the command line and a
// user inline in a config file every user can read: both are used, and each draws a warning
// in the log that says where the secret should go.
func TestSecretWarningsLogged(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "avedge.yaml")
	writeFile(t, cfg, "user: [alice:alice-pw]\n", 0o644)
	s := start(t, "--config", cfg, "--static-auth-secret", "0123456789abcdef0123456789abcdef")
	logged := s.stderr.String()
	for _, want := range []string{
		`level=WARN msg="--static-auth-secret is given on the command line, which every user of this host can read (ps, /proc/PID/cmdline): put it in a file named by --static-auth-secret-file instead"`,
		`level=WARN msg="` + cfg + ` holds user inline and is mode 0644`,
	} {
		if !strings.Contains(logged, want) {
			t.Errorf("log does not say %s:\n%s", want, logged)
		}
	}
	if strings.Contains(s.stdout.String(), "password:") {
		t.Errorf("a credential was printed with a configured secret and no print-credentials:\n%s", s.stdout.String())
	}
}

// TestReadableSecretsFileRefused checks the daemon's start with a secrets file every user can
// read: refused (exit 2) with the message naming the option, the file, its mode and the fixes;
// started, with a warning, under --allow-readable-secrets; started without one at 0600.
func TestReadableSecretsFileRefused(t *testing.T) {
	secrets := filepath.Join(t.TempDir(), "secrets")
	writeFile(t, secrets, "k1 0123456789abcdef0123456789abcdef\n", 0o644)
	var stderr lockedBuffer
	// Cancelled before: were the file accepted, the daemon would stop at once with exit 0.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	code := run(ctx, []string{"--data-path", "epoll", "--static-auth-secret-file", secrets, "--listening-port", "0", "--metrics-listen", "",
		"--auth-listen", ""}, io.Discard, &stderr, nil)
	want := "avedge: config: static-auth-secret-file: " + secrets + " holds secrets and is mode 0644"
	if code != 2 || !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), "chmod 600 "+secrets) ||
		!strings.Contains(stderr.String(), "--allow-readable-secrets") {
		t.Fatalf("exit %d, want 2 with %q, chmod 600 and the flag:\n%s", code, want, stderr.String())
	}

	s := start(t, "--static-auth-secret-file", secrets, "--allow-readable-secrets")
	if !strings.Contains(s.stderr.String(), "level=WARN msg=\"static-auth-secret-file: "+secrets+" holds secrets and is mode 0644") {
		t.Errorf("no warning for the readable file read under --allow-readable-secrets:\n%s", s.stderr.String())
	}
	s.stop(t)

	if err := os.Chmod(secrets, 0o600); err != nil {
		t.Fatal(err)
	}
	s = start(t, "--static-auth-secret-file", secrets)
	if strings.Contains(s.stderr.String(), "level=WARN msg=\"static-auth-secret-file") {
		t.Errorf("a warning for a 0600 secrets file:\n%s", s.stderr.String())
	}
}

// TestCredentialsNotPrintedOffLoopback derives the embedded default with the metrics endpoint
// on the wildcard (no socket is opened: announce is given the listeners' addresses) and checks
// that neither the generated secret, a credential nor the generated API key is printed, but a
// line that says why and names a file only this user can read, which holds a credential that
// validates, the secret and the API key, and is removed at exit.
func TestCredentialsNotPrintedOffLoopback(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	o, err := config.Parse([]string{"--metrics-listen", "0.0.0.0:9641"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	sec, _ := st.Keyring.Newest()
	if !st.GeneratedSecret || st.GeneratedAPIKey == "" {
		t.Fatalf("generated secret %v, API key %q: want both", st.GeneratedSecret, st.GeneratedAPIKey)
	}

	var out strings.Builder
	remove := announce(&out, st, nil, st.Relay.Listeners, "127.0.0.1:8443")
	printed := out.String()
	for _, secret := range []string{string(sec.Value), st.GeneratedAPIKey, "password:", "username:"} {
		if strings.Contains(printed, secret) {
			t.Errorf("printed %q with metrics on 0.0.0.0:\n%s", secret, printed)
		}
	}
	m := regexp.MustCompile(`Credentials are not printed: metrics-listen 0\.0\.0\.0:9641 is not on loopback\.\nThey are in (\S+), which only this user can read`).FindStringSubmatch(printed)
	if m == nil {
		t.Fatalf("no line saying why and where:\n%s", printed)
	}
	fi, err := os.Stat(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s is mode %04o, want 0600", m[1], fi.Mode().Perm())
	}
	b, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	inFile := string(b)
	user := regexp.MustCompile(`username: (\S+)`).FindStringSubmatch(inFile)
	pass := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(inFile)
	if user == nil || pass == nil || auth.RESTPassword(sec.Value, user[1]) != pass[1] {
		t.Errorf("the file holds no credential of the relay's secret:\n%s", inFile)
	}
	for _, want := range []string{"shared secret (generated for this run): " + string(sec.Value), "Bearer " + st.GeneratedAPIKey} {
		if !strings.Contains(inFile, want) {
			t.Errorf("the file does not hold %q:\n%s", want, inFile)
		}
	}
	remove()
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("%s still there after remove: %v", m[1], err)
	}

	// The same settings with every listener on loopback: printed, no file.
	st.NonLoopback = ""
	out.Reset()
	announce(&out, st, nil, st.Relay.Listeners, "127.0.0.1:8443")()
	if !strings.Contains(out.String(), "password: ") || !strings.Contains(out.String(), "Bearer "+st.GeneratedAPIKey) {
		t.Errorf("not printed with every listener on loopback:\n%s", out.String())
	}
	if left, _ := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "*")); len(left) != 0 {
		t.Errorf("files left in TMPDIR: %v", left)
	}
}
