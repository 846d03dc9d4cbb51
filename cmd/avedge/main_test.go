package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/relay"
)

// lockedBuffer is an io.Writer safe for the daemon's goroutines and the test.
type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // closed by the next Write; made by waitFor
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wrote != nil {
		close(l.wrote)
		l.wrote = nil
	}
	return l.b.Write(p)
}

// waitFor waits up to d for the text written from offset from on to contain want, and returns
// that text and whether it does.
func (l *lockedBuffer) waitFor(from int, want string, d time.Duration) (string, bool) {
	timeout := time.After(d)
	for {
		l.mu.Lock()
		text := l.b.String()[from:]
		if strings.Contains(text, want) {
			l.mu.Unlock()
			return text, true
		}
		if l.wrote == nil {
			l.wrote = make(chan struct{})
		}
		wrote := l.wrote
		l.mu.Unlock()
		select {
		case <-wrote:
		case <-timeout:
			return text, false
		}
	}
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestHelpAndBadConfig(t *testing.T) {
	var out lockedBuffer
	if code := run(context.Background(), []string{"--help"}, io.Discard, &out, nil); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, key := range []string{"listening-port", "min-port", "external-ip", "static-auth-secret", "allow-loopback-peers", "(default 50000)"} {
		if !strings.Contains(out.String(), key) {
			t.Errorf("--help does not document %q", key)
		}
	}
	var errOut lockedBuffer
	if code := run(context.Background(), []string{"--min-port", "9"}, io.Discard, &errOut, nil); code != 2 {
		t.Fatalf("bad range exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "min-port") {
		t.Fatalf("error does not name the key: %q", errOut.String())
	}
}

// TestEmbeddedDefaultWorksAsPrinted runs the daemon's default setup (on ephemeral ports so
// that it cannot collide) and allocates with the credential it printed.
func TestEmbeddedDefaultWorksAsPrinted(t *testing.T) {
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *relay.Server, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--data-path", "epoll", "--listening-port", "0", "--metrics-listen", "127.0.0.1:0", "--min-port", "32000", "--max-port", "32099", "--auth-listen", "127.0.0.1:0"}, &stdout, &stderr, ready)
	}()
	var srv *relay.Server
	select {
	case srv = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready in 10s")
	}
	printed := stdout.String()
	user := regexp.MustCompile(`username: (\S+)`).FindStringSubmatch(printed)
	pass := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(printed)
	cmd := regexp.MustCompile(`turnutils_uclient .* -u '([^']+)' -w '([^']+)' -p (\d+) 127\.0\.0\.1`).FindStringSubmatch(printed)
	if user == nil || pass == nil || cmd == nil || !strings.Contains(printed, `"iceServers"`) {
		t.Fatalf("credentials not printed as expected:\n%s", printed)
	}
	if cmd[1] != user[1] || cmd[2] != pass[1] {
		t.Fatalf("uclient line does not carry the printed credential")
	}
	if !strings.Contains(stderr.String(), "loopback peers are allowed") {
		t.Fatalf("log does not say loopback peers are allowed:\n%s", stderr.String())
	}
	server := "127.0.0.1:" + cmd[3]
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: pc,
		Username: user[1], Password: pass[1], Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate with the printed credential: %v", err)
	}
	port := alloc.LocalAddr().(*net.UDPAddr).Port
	if port < 32000 || port > 32099 {
		t.Fatalf("relay port %d outside the range", port)
	}
	if held := srv.Stats().Ports.Held; held != 1 {
		t.Fatalf("ports held %d, want 1", held)
	}

	// The built-in credential service answers the printed curl line, and what it issues
	// allocates too.
	curl := regexp.MustCompile(`curl -s -H 'Authorization: Bearer ([0-9a-f]+)' '(http://[^']+)'`).FindStringSubmatch(printed)
	if curl == nil {
		t.Fatalf("no credential service line printed:\n%s", printed)
	}
	req, _ := http.NewRequest(http.MethodGet, curl[2], nil)
	req.Header.Set("Authorization", "Bearer "+curl[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var cred struct {
		Username, Password string
		TTL                int
		URIs               []string
	}
	err = json.NewDecoder(resp.Body).Decode(&cred)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || cred.Username == "" || len(cred.URIs) == 0 {
		t.Fatalf("credential service answered %d %+v (%v)", resp.StatusCode, cred, err)
	}
	pc2, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc2.Close()
	c2, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: pc2,
		Username: cred.Username, Password: cred.Password, Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Allocate(); err != nil {
		t.Fatalf("allocate with the service's credential: %v", err)
	}
	c2.Close()
	c.Close()

	// The printed turnutils_uclient line, run as printed (coturn's client; CI installs it).
	if path, err := exec.LookPath("turnutils_uclient"); err == nil {
		args := strings.Fields(strings.NewReplacer("'", "").Replace(cmd[0]))[1:]
		uctx, ucancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := exec.CommandContext(uctx, path, args...).CombinedOutput()
		ucancel()
		if err != nil {
			t.Fatalf("printed uclient line failed: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`Total lost packets 0 `).Match(out) {
			t.Fatalf("printed uclient line lost packets:\n%s", out)
		}
	} else if os.Getenv("AVEDGE_REQUIRE_INTEROP") != "" {
		t.Fatal("turnutils_uclient not installed (AVEDGE_REQUIRE_INTEROP is set)")
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after interrupt", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop within 15s of the interrupt")
	}
	if held := srv.Stats().Ports.Held; held != 0 {
		t.Fatalf("ports still held after exit: %d", held)
	}
}

// TestFailedStartStopsWhatItStarted makes the credential service's listen fail after the
// metrics endpoint is up: run must close the metrics listener and end its Serve goroutine
// before it returns.
func TestFailedStartStopsWhatItStarted(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var stderr lockedBuffer
	code := run(context.Background(), []string{"--data-path", "epoll", "--listening-port", "0", "--metrics-listen", "127.0.0.1:0",
		"--min-port", "32100", "--max-port", "32199", "--auth-listen", busy.Addr().String()}, io.Discard, &stderr, nil)
	if code != 1 || !strings.Contains(stderr.String(), "credential service: listen") {
		t.Fatalf("exit %d, want 1 with the credential service's listen error:\n%s", code, stderr.String())
	}
	m := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("metrics endpoint not started:\n%s", stderr.String())
	}
	if c, err := net.Dial("tcp", m[1]); err == nil {
		c.Close()
		t.Errorf("metrics endpoint %s still accepts connections after run returned", m[1])
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "net/http.(*Server).Serve(") {
		t.Errorf("an HTTP Serve goroutine outlives run:\n%s", stacks)
	}
}
