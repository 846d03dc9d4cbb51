package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
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
		{name: "bad log level", args: []string{"--secret-file", secrets, "--allow-anonymous", "--log-level", "loud"}, wantErr: "--log-level"},
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
		for _, f := range []string{"-listen", "(default \"127.0.0.1:8443\")", "-max-duration", "(default 8h0m0s)", "-allow-anonymous", "-relay", "-tls-cert", "-allow-readable-secrets"} {
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

// TestReadableSecretFiles checks --secret-file and --api-key-file at mode 0644: refused with a
// message that names the flag, the file, its mode and both fixes; served, with a warning,
// under --allow-readable-secrets.
func TestReadableSecretFiles(t *testing.T) {
	secrets := writeFile(t, "secrets", "k1 s1\n")
	keys := writeFile(t, "keys", "key-a\n")
	for _, f := range []struct{ flag, path string }{{"secret-file", secrets}, {"api-key-file", keys}} {
		t.Run(f.flag, func(t *testing.T) {
			if err := os.Chmod(f.path, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(f.path, 0o600)
			args := []string{"--secret-file", secrets, "--api-key-file", keys}
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
