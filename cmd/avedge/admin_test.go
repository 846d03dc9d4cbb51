package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"
)

// The daemon serves the admin API on admin-listen (with its key) and admin-socket (without),
// and SIGHUP re-reads the revocations file: a revocation written there by another relay of
// the pool refuses the credential here and ends its live allocations.
func TestAdminAPIAndRevocationsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	secret := "admin-test-secret-0123456789"
	writeFile(t, filepath.Join(dir, "secrets"), secret+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "admin-keys"), "admin-key-1\n", 0o600)
	revs := filepath.Join(dir, "revocations.json")
	sock := filepath.Join(dir, "admin.sock")
	s := start(t, "--static-auth-secret-file", filepath.Join(dir, "secrets"), "--admin-listen", "127.0.0.1:0",
		"--admin-api-key-file", filepath.Join(dir, "admin-keys"), "--admin-socket", sock, "--revocations-file", revs,
		"--min-port", "32500", "--max-port", "32599")
	m := regexp.MustCompile(`msg="admin API listening" addr=(\S+) tls=false`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("the admin API did not log its address:\n%s", s.stderr.String())
	}
	ctx := context.Background()
	keyed, err := admin.NewClient(admin.ClientConfig{URL: "http://" + m[1], Key: "admin-key-1"})
	if err != nil {
		t.Fatal(err)
	}
	local, err := admin.NewClient(admin.ClientConfig{URL: "unix://" + sock})
	if err != nil {
		t.Fatal(err)
	}
	unkeyed, _ := admin.NewClient(admin.ClientConfig{URL: "http://" + m[1]})
	if _, err := unkeyed.Status(ctx); admin.StatusOf(err) != 401 {
		t.Errorf("status without a key on admin-listen: %v, want 401", err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	udp := regexp.MustCompile(`msg=listening transport=udp addr=(\S+)`).FindStringSubmatch(s.stderr.String())
	if udp == nil {
		t.Fatalf("no UDP listener logged:\n%s", s.stderr.String())
	}
	user, pass := auth.MintREST([]byte(secret), "alice", time.Now().Add(time.Hour))
	relayed, code := allocateOn(t, udp[1], user, pass)
	if code != 0 {
		t.Fatalf("Allocate: %d", code)
	}
	defer relayed.Close()
	for _, c := range []*admin.Client{keyed, local} {
		st, err := c.Status(ctx)
		if err != nil || st.Allocations != 1 || st.Version != version {
			t.Fatalf("status: %+v, %v", st, err)
		}
	}
	page, err := local.Allocations(ctx, admin.Query{User: "alice"})
	if err != nil || len(page.Allocations) != 1 {
		t.Fatalf("alice's allocations: %+v, %v", page, err)
	}

	// Another relay of the pool revokes alice in the shared file; SIGHUP applies it here.
	writeFile(t, revs, `{"revocations": [{"username": "alice", "created": "2026-01-01T00:00:00Z"}]}`, 0o600)
	from := len(s.stderr.String())
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logged, ok := s.stderr.waitFor(from, "SIGHUP: revocations reloaded", 10*time.Second)
	if !ok {
		t.Fatalf("SIGHUP: no reload of the revocations file logged:\n%s", logged)
	}
	if !strings.Contains(logged, "allocations-ended=1") {
		t.Errorf("the reload did not end alice's allocation:\n%s", logged)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := keyed.Status(ctx)
		if err == nil && st.Allocations == 0 && st.Revocations == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the revocation: %+v, %v", st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	user2, pass2 := auth.MintREST([]byte(secret), "alice", time.Now().Add(2*time.Hour))
	if _, code := allocateOn(t, udp[1], user2, pass2); code != 401 {
		t.Errorf("alice's Allocate after the revocation: %d, want 401", code)
	}
	// POST /v1/reload does the same as SIGHUP; a file that does not parse is refused, the
	// list in force stays.
	writeFile(t, revs, "{broken", 0o600)
	if _, err := keyed.Reload(ctx); admin.StatusOf(err) != 422 || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if l, err := keyed.Revocations(ctx); err != nil || len(l.Revocations) != 1 {
		t.Errorf("revocations after a refused reload: %+v, %v", l, err)
	}
}

// allocateOn allocates over UDP at server; the code is the STUN error (0: allocated).
func allocateOn(t *testing.T, server, username, password string) (net.PacketConn, int) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: pc,
		Username: username, Password: password, Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	relayed, err := c.Allocate()
	var te *stun.TurnError
	switch {
	case err == nil:
		return relayed, 0
	case errors.As(err, &te):
		return nil, int(te.ErrorCodeAttr.Code)
	}
	t.Fatalf("allocate: %v", err)
	return nil, 0
}

// The revocations file is re-read when it changes, as a Kubernetes ConfigMap update changes
// it: a new file (another inode) behind the same name.
func TestRevocationsFileWatched(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "revocations.json")
	writeFile(t, path, `{"revocations": []}`, 0o600)
	st := &config.Settings{Admin: config.AdminSettings{RevocationsFile: path}}
	a := newAdminAPI(st)
	changed := make(chan struct{}, 1)
	last := fileStamp(path)
	a.watching.Go(func() {
		a.watch(func() error {
			select {
			case changed <- struct{}{}:
			default:
			}
			return nil
		}, 5*time.Millisecond, last)
	})
	defer a.close()
	writeFile(t, filepath.Join(dir, "new"), `{"revocations": [{"username": "alice"}]}`, 0o600)
	if err := os.Rename(filepath.Join(dir, "new"), path); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("the change was not noticed within 10s")
	}
}

// admin-tls-cert and admin-tls-key: the admin API speaks HTTPS, and avedge-ctl's client
// trusts the certificate it is given.
func TestAdminAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "admin-keys"), "admin-key-1\n", 0o600)
	_, crt, key := writePair(t, dir, "admin", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	s := start(t, "--admin-listen", "127.0.0.1:0", "--admin-api-key-file", filepath.Join(dir, "admin-keys"),
		"--admin-tls-cert", crt, "--admin-tls-key", key, "--min-port", "32500", "--max-port", "32599")
	m := regexp.MustCompile(`msg="admin API listening" addr=(\S+) tls=true`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("the admin API did not log its TLS address:\n%s", s.stderr.String())
	}
	c, err := admin.NewClient(admin.ClientConfig{URL: "https://" + m[1], Key: "admin-key-1", CAFile: crt})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(context.Background()); err != nil || st.Version != version {
		t.Fatalf("status over HTTPS: %+v, %v", st, err)
	}
	plain, _ := admin.NewClient(admin.ClientConfig{URL: "http://" + m[1], Key: "admin-key-1"})
	if _, err := plain.Status(context.Background()); err == nil {
		t.Error("plain HTTP to the TLS listener answered")
	}
}
