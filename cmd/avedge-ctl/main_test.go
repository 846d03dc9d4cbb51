package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/relay"
)

// The relay ports of this package's tests: 14000–14099 (see relay/helpers_test.go for the
// other packages' ranges).

var secret = []byte("ctl-test-secret-0123456789")

const apiKey = "ctl-test-key"

// rig is a live relay with the admin API served on loopback, as cmd/avedge wires it.
type rig struct {
	srv   *relay.Server
	h     *admin.Handler
	url   string
	revs  string // the revocations file
	turn  string // the UDP listener
	sock  string // the Unix socket's URL
	peers net.PacketConn
}

func newRig(t *testing.T) *rig {
	t.Helper()
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	srv, err := relay.New(relay.Config{
		Listeners: []relay.ListenerConfig{{Network: relay.UDP, Addr: lo}},
		RelayIPs:  []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:   14000, MaxPort: 14099,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: secret})}),
		Peers:     relay.PeerPolicy{AllowLoopback: true},
		Workers:   1,
		DataPath:  relay.DataPathEpoll, // auto would attach the kernel fast path to this namespace's lo
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	r := &rig{srv: srv, revs: filepath.Join(t.TempDir(), "revocations.json")}
	rev, err := admin.NewRevocations(r.revs)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRevocations(rev)
	r.h, err = admin.NewHandler(admin.Config{Backend: srv, Revocations: rev, APIKeys: []string{apiKey}, Version: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(r.h)
	t.Cleanup(hs.Close)
	r.url = hs.URL
	// The same API on a Unix socket, without a key.
	sockPath := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	us := &httptest.Server{Listener: ln, Config: &http.Server{Handler: r.h.Local()}}
	us.Start()
	t.Cleanup(us.Close)
	r.sock = "unix://" + sockPath
	for _, l := range srv.Addrs() {
		r.turn = l.Addr.String()
	}
	// An echo peer.
	r.peers = testnet.Echo(t, "udp4", "127.0.0.1:0")
	return r
}

// ctl runs avedge-ctl with args against the rig (key in the environment) and returns the
// exit code and what it printed.
func (r *rig) ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return r.ctlEnv(t, map[string]string{"AVEDGE_ADMIN_URL": r.url, "AVEDGE_ADMIN_KEY": apiKey}, args...)
}

func (r *rig) ctlEnv(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

// ctlJSON runs avedge-ctl --json and decodes what it prints into v.
func (r *rig) ctlJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, out, errs := r.ctl(t, append([]string{"--json"}, args...)...)
	if code != exitOK {
		t.Fatalf("avedge-ctl %v: exit %d: %s", args, code, errs)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("avedge-ctl %v: %v in %q", args, err, out)
	}
}

// client is a pion TURN client with an allocation, and its credentials.
type client struct {
	c                  *turn.Client
	relayed            net.PacketConn
	username, password string
}

func (r *rig) allocate(t *testing.T, user string) *client {
	t.Helper()
	username, password := auth.MintREST(secret, user, time.Now().Add(time.Hour))
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: r.turn, TURNServerAddr: r.turn, Conn: pc,
		Username: username, Password: password, Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate %s: %v", user, err)
	}
	return &client{c: c, relayed: relayed, username: username, password: password}
}

// echo sends n packets of size bytes to the echo peer through the allocation and reads each
// back.
func (c *client) echo(t *testing.T, peer net.Addr, n, size int) {
	t.Helper()
	buf := make([]byte, 1500)
	msg := bytes.Repeat([]byte{'x'}, size)
	for i := 0; i < n; i++ {
		got := false
		for try := 0; try < 20 && !got; try++ {
			if _, err := c.relayed.WriteTo(msg, peer); err != nil {
				t.Fatal(err)
			}
			_ = c.relayed.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			if _, _, err := c.relayed.ReadFrom(buf); err == nil {
				got = true
			}
		}
		if !got {
			t.Fatalf("packet %d: no echo", i)
		}
	}
}

// refresh sends a Refresh (RFC 8656 §7) with the client's credentials: an unsigned one
// for the nonce, then the signed one; it fails when the relay does not answer within 2s.
func (c *client) refresh(t *testing.T) error {
	t.Helper()
	to := c.c.TURNServerAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lifetime := turnLifetime(10 * time.Minute)
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime, stun.Fingerprint)
	res, err := c.c.PerformTransactionWithContext(m, to, false, ctx)
	if err != nil {
		return err
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(res.Msg); err != nil {
		return fmt.Errorf("unsigned Refresh: no NONCE in %v", res.Msg)
	}
	if err := realm.GetFrom(res.Msg); err != nil {
		return err
	}
	m = stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime,
		stun.NewUsername(c.username), realm, nonce, stun.NewLongTermIntegrity(c.username, realm.String(), c.password), stun.Fingerprint)
	res, err = c.c.PerformTransactionWithContext(m, to, false, ctx)
	if err != nil {
		return err
	}
	if res.Msg.Type.Class != stun.ClassSuccessResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(res.Msg)
		return fmt.Errorf("Refresh: %v", code)
	}
	return nil
}

type turnLifetime time.Duration

func (l turnLifetime) AddTo(m *stun.Message) error {
	v := make([]byte, 4)
	s := uint32(time.Duration(l) / time.Second)
	v[0], v[1], v[2], v[3] = byte(s>>24), byte(s>>16), byte(s>>8), byte(s)
	m.Add(stun.AttrLifetime, v)
	return nil
}

// poll waits up to 3 s for cond, checking every 5 ms.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every command, against a live relay with real TURN clients.
func TestCommandsAgainstLiveRelay(t *testing.T) {
	r := newRig(t)
	alice := r.allocate(t, "alice")
	bob := r.allocate(t, "bob")
	peer := r.peers.LocalAddr()
	alice.echo(t, peer, 5, 100)

	// status
	var st admin.Status
	r.ctlJSON(t, &st, "status")
	if st.Version != "test" || st.Allocations != 2 || st.Ports.Total != 100 || st.Ports.Used != 2 || st.Draining || len(st.Listeners) != 1 || st.Workers != 1 {
		t.Errorf("status %+v", st)
	}
	if code, out, _ := r.ctl(t, "status"); code != 0 || !strings.Contains(out, "allocations  2") || !strings.Contains(out, "ports        2 used, 98 free of 100") {
		t.Errorf("status table (exit %d):\n%s", code, out)
	}

	// allocations: alice's counters rise with her traffic. (A packet that goes through pion
	// is counted just after its send, which its echo may overtake: poll.)
	var list []admin.Allocation
	var before, after admin.Allocation
	poll(t, "alice's counters after 5 echoes", func() bool {
		r.ctlJSON(t, &list, "allocations", "--user", "alice")
		if len(list) != 1 {
			t.Fatalf("alice's allocations: %+v", list)
		}
		before = list[0]
		return before.ClientToPeer.Bytes >= 500 && before.PeerToClient.Bytes >= 500
	})
	if before.User != "alice" || before.Transport != "udp" || len(before.Permissions) != 1 || before.ClientToPeer.Packets < 5 || before.PeerToClient.Packets < 5 {
		t.Errorf("alice's allocation after 5 echoes of 100 bytes: %+v", before)
	}
	alice.echo(t, peer, 10, 200)
	poll(t, "alice's counters to rise by 10 echoes of 200 bytes", func() bool {
		r.ctlJSON(t, &list, "allocations", "--user", "alice")
		after = list[0]
		return after.ClientToPeer.Bytes >= before.ClientToPeer.Bytes+2000 && after.PeerToClient.Bytes >= before.PeerToClient.Bytes+2000
	})
	code, out, _ := r.ctl(t, "allocations")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "2 allocation(s)") || !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Errorf("allocations table (exit %d):\n%s", code, out)
	}
	t.Logf("avedge-ctl allocations:\n%s", out)
	r.ctlJSON(t, &list, "allocations", "--limit", "1")
	if len(list) != 1 {
		t.Errorf("--limit 1: %d allocations", len(list))
	}
	r.ctlJSON(t, &list, "allocations", "--client", bob.c.TURNServerAddr().String())
	if len(list) != 0 {
		t.Errorf("--client of no client: %d allocations", len(list))
	}

	// show
	var one admin.Allocation
	r.ctlJSON(t, &one, "show", after.ID)
	if one.ID != after.ID || one.User != "alice" {
		t.Errorf("show: %+v", one)
	}
	if code, out, _ := r.ctl(t, "show", after.ID); code != 0 || !strings.Contains(out, "permissions") || !strings.Contains(out, "127.0.0.1") {
		t.Errorf("show table (exit %d):\n%s", code, out)
	}

	// kick ID: the allocation ends, its port goes back, alice's next Refresh fails, bob's works.
	if err := alice.refresh(t); err != nil {
		t.Fatalf("alice's Refresh before the kick: %v", err)
	}
	if code, out, errs := r.ctl(t, "kick", after.ID); code != 0 || out != "ended 1 allocation(s)\n" {
		t.Fatalf("kick: exit %d, %q %q", code, out, errs)
	}
	poll(t, "the kicked allocation to end", func() bool { return r.srv.Status().Allocations == 1 })
	if used := r.srv.Status().Ports.Used; used != 1 {
		t.Errorf("ports used after the kick: %d, want 1", used)
	}
	if err := alice.refresh(t); err == nil {
		t.Error("alice's Refresh after the kick succeeded")
	}
	if err := bob.refresh(t); err != nil {
		t.Errorf("bob's Refresh: %v", err)
	}
	if code, _, errs := r.ctl(t, "kick", after.ID); code != exitNotFound {
		t.Errorf("kick of an ended allocation: exit %d (%s), want %d", code, errs, exitNotFound)
	}

	// kick --user
	r.allocate(t, "carol")
	r.allocate(t, "carol")
	var ended admin.Ended
	r.ctlJSON(t, &ended, "kick", "--user", "carol")
	if ended.Ended != 2 {
		t.Errorf("kick --user carol: %+v", ended)
	}
	poll(t, "carol's allocations to end", func() bool { return r.srv.Status().Allocations == 1 })

	// revoke: bob's live allocation ends and his next Allocate is refused with 401.
	var res admin.RevokeResult
	r.ctlJSON(t, &res, "revoke", "bob", "--reason", "test")
	if res.Ended != 1 || res.Revocation.Username != "bob" || res.Warning != "" {
		t.Errorf("revoke bob: %+v", res)
	}
	poll(t, "bob's allocation to end", func() bool { return r.srv.Status().Allocations == 0 })
	username, password := auth.MintREST(secret, "bob", time.Now().Add(2*time.Hour))
	if err := allocateErr(r.turn, username, password); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bob's Allocate after the revocation: %v, want 401", err)
	}
	// A TURN REST username: revoked until its own expiry (plus a grace).
	dave := r.allocate(t, "dave")
	code, out, _ = r.ctl(t, "revoke", dave.username)
	if code != 0 || !strings.Contains(out, "revoked "+dave.username+" until ") || !strings.Contains(out, "ended 1") {
		t.Errorf("revoke a REST username: exit %d, %q", code, out)
	}
	var revs admin.RevocationList
	r.ctlJSON(t, &revs, "revocations")
	if len(revs.Revocations) != 2 || revs.File != r.revs {
		t.Errorf("revocations: %+v", revs)
	}
	if code, out, _ := r.ctl(t, "revocations"); code != 0 || !strings.Contains(out, "bob") || !strings.Contains(out, "2 revocation(s), file "+r.revs) {
		t.Errorf("revocations table (exit %d):\n%s", code, out)
	}
	// The file holds them (a relay that re-reads it refuses the same).
	if b, err := os.ReadFile(r.revs); err != nil || !strings.Contains(string(b), `"username": "bob"`) {
		t.Errorf("revocations file: %v\n%s", err, b)
	}
	// unrevoke: bob may allocate again.
	if code, out, _ := r.ctl(t, "unrevoke", "bob"); code != 0 || !strings.Contains(out, "lifted") {
		t.Errorf("unrevoke: exit %d %q", code, out)
	}
	if err := allocateErr(r.turn, username, password); err != nil {
		t.Errorf("bob's Allocate after unrevoke: %v", err)
	}
	if code, _, _ := r.ctl(t, "unrevoke", "bob"); code != exitNotFound {
		t.Errorf("unrevoke of no revocation: exit %d, want %d", code, exitNotFound)
	}

	// reload re-reads the file: a revocation another relay of the pool wrote applies here,
	// and the live allocations of its user end.
	erin := r.allocate(t, "erin")
	_ = erin
	writeRevocations(t, r.revs, "erin")
	var rl admin.Reloaded
	r.ctlJSON(t, &rl, "reload")
	if !rl.Reloaded || rl.Revocations != 1 || rl.Ended != 1 {
		t.Errorf("reload: %+v", rl)
	}
	if code, out, _ := r.ctl(t, "reload"); code != 0 || !strings.Contains(out, "reloaded; 1 revocation(s)") {
		t.Errorf("reload table: exit %d %q", code, out)
	}
	poll(t, "erin's allocation to end", func() bool {
		p, _ := r.srv.Allocations(admin.Query{User: "erin"})
		return len(p.Allocations) == 0
	})
	if err := os.WriteFile(r.revs, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := r.ctl(t, "reload"); code != exitRefused || !strings.Contains(errs, "does not parse") {
		t.Errorf("reload of a broken file: exit %d %q, want %d", code, errs, exitRefused)
	}

	// drain, undrain
	var d admin.DrainState
	r.ctlJSON(t, &d, "drain")
	if !d.Draining || !r.srv.Status().Draining {
		t.Errorf("drain: %+v", d)
	}
	if err := allocateErr(r.turn, username, password); err == nil {
		t.Error("Allocate while draining succeeded")
	}
	if code, out, _ := r.ctl(t, "undrain"); code != 0 || !strings.Contains(out, "taking new allocations") {
		t.Errorf("undrain: exit %d %q", code, out)
	}
	if err := allocateErr(r.turn, username, password); err != nil {
		t.Errorf("Allocate after undrain: %v", err)
	}

	// The Unix socket needs no key.
	if code, out, errs := r.ctlEnv(t, map[string]string{"AVEDGE_ADMIN_URL": r.sock}, "status"); code != 0 || !strings.Contains(out, "version") {
		t.Errorf("status over the Unix socket: exit %d %q %q", code, out, errs)
	}
}

// allocateErr makes one allocation with a fresh pion client and closes it.
func allocateErr(server, username, password string) error {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pc.Close()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: pc,
		Username: username, Password: password, Realm: "avedge"})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	relayed, err := c.Allocate()
	if err != nil {
		return err
	}
	return relayed.Close()
}

func writeRevocations(t *testing.T, path string, users ...string) {
	t.Helper()
	var f struct {
		Revocations []admin.Revocation `json:"revocations"`
	}
	for _, u := range users {
		f.Revocations = append(f.Revocations, admin.Revocation{Username: u, Created: time.Now().UTC()})
	}
	b, _ := json.Marshal(f)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Errors: a bad key is 401 (exit 5), bad input 400 with a message saying what is wrong (exit
// 1, or 2 for what avedge-ctl catches itself), an unknown allocation 404 (exit 4), an
// unreachable relay exit 3.
func TestErrors(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"no key", map[string]string{"AVEDGE_ADMIN_URL": r.url}, []string{"status"}, exitUnauthorized, "401"},
		{"wrong key", map[string]string{"AVEDGE_ADMIN_URL": r.url, "AVEDGE_ADMIN_KEY": "nope"}, []string{"status"}, exitUnauthorized, "missing or unknown API key"},
		{"unknown allocation", nil, []string{"show", "12345"}, exitNotFound, "no live allocation 12345"},
		{"kick unknown", nil, []string{"kick", "12345"}, exitNotFound, "404"},
		{"bad id", nil, []string{"show", "abc"}, exitRefused, `allocation id "abc": want the number`},
		{"bad client", nil, []string{"allocations", "--client", "nowhere"}, exitRefused, `client "nowhere": want an IP address`},
		{"bad until", nil, []string{"revoke", "x", "--until", "tomorrow"}, exitUsage, "RFC 3339"},
		{"past until", nil, []string{"revoke", "x", "--until", "2001-01-01T00:00:00Z"}, exitRefused, "is not in the future"},
		{"no command", nil, nil, exitUsage, "usage"},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, "unknown command"},
		{"kick without target", nil, []string{"kick"}, exitUsage, "give an allocation ID, or --user U"},
		{"unreachable", map[string]string{"AVEDGE_ADMIN_URL": "http://127.0.0.1:1"}, []string{"status"}, exitUnreachable, "refused"},
		{"bad url", map[string]string{"AVEDGE_ADMIN_URL": "ftp://x"}, []string{"status"}, exitUsage, "scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = map[string]string{"AVEDGE_ADMIN_URL": r.url, "AVEDGE_ADMIN_KEY": apiKey}
			}
			code, _, errs := r.ctlEnv(t, env, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errs, tc.code, tc.stderr)
			}
		})
	}
}

// The API itself, for what avedge-ctl does not send: bad bodies and parameters get 400 with
// a message, unknown paths 404, every answer JSON.
func TestAPIBadInput(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		method, path, body string
		code               int
		msg                string
	}{
		{"GET", "/v1/allocations?limit=0", "", 400, "limit \"0\": want a number from 1 to 1000"},
		{"GET", "/v1/allocations?limit=5000", "", 400, "want a number from 1 to 1000"},
		{"GET", "/v1/allocations?cursor=x", "", 400, "cursor \"x\""},
		{"GET", "/v1/allocations?usr=bob", "", 400, "unknown parameter \"usr\""},
		{"DELETE", "/v1/allocations", "", 400, "give user=U"},
		{"POST", "/v1/revocations", "{", 400, "body: want JSON"},
		{"POST", "/v1/revocations", `{"username": ""}`, 400, "username is empty"},
		{"POST", "/v1/revocations", `{"user": "bob"}`, 400, "unknown field"},
		{"POST", "/v1/revocations", `{"username": "a\u0001b"}`, 400, "control characters"},
		{"GET", "/v1/nothing", "", 404, "no such endpoint"},
		{"DELETE", "/v1/revocations/nobody", "", 404, "\"nobody\" is not revoked"},
		{"GET", "/v1/allocations/99999999", "", 404, "no live allocation"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, r.url+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e admin.Error
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("answer is not JSON: %v", err)
			}
			if resp.StatusCode != tc.code || !strings.Contains(e.Error, tc.msg) {
				t.Errorf("%d %q; want %d and %q", resp.StatusCode, e.Error, tc.code, tc.msg)
			}
		})
	}
	_ = errors.New
}
