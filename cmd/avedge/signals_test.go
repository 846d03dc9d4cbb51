package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/relay"
)

// reloadRig is the daemon as run wires it (config file → settings → relay), with the pieces
// reload takes, so that SIGHUP's handler can be called directly: no signal is sent.
type reloadRig struct {
	dir       string
	args      []string
	st        *config.Settings
	srv       *relay.Server
	log       lockedBuffer
	udp       string
	cfgPath   string
	secrets   string
	usersPath string
}

func (r *reloadRig) write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeConfig writes the YAML config file; extra is appended as more keys.
func (r *reloadRig) writeConfig(t *testing.T, extra string) {
	t.Helper()
	r.write(t, r.cfgPath, fmt.Sprintf(`listening-port: 0
data-path: epoll
no-tcp: true
min-port: 15000
max-port: 15099
port-quarantine: 0s
metrics-listen: ""
static-auth-secret-file: %s
users-file: %s
%s`, r.secrets, r.usersPath, extra))
}

func newReloadRig(t *testing.T, secrets, users string) *reloadRig {
	t.Helper()
	return newReloadRigWith(t, secrets, users, "")
}

// newReloadRigWith is newReloadRig with extra keys in the config file.
func newReloadRigWith(t *testing.T, secrets, users, extra string) *reloadRig {
	t.Helper()
	dir := t.TempDir()
	r := &reloadRig{dir: dir, cfgPath: filepath.Join(dir, "avedge.yaml"),
		secrets: filepath.Join(dir, "secrets"), usersPath: filepath.Join(dir, "users")}
	r.write(t, r.secrets, secrets)
	r.write(t, r.usersPath, users)
	r.writeConfig(t, extra)
	r.args = []string{"--config", r.cfgPath}
	opts, err := config.Parse(r.args, io.Discard)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	r.st, err = opts.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	rc := r.st.Relay
	rc.Logger = newLogger(&r.log, "text", "info")
	rc.Workers = 1 // the config file pins data-path epoll: auto would attach to this namespace's lo
	r.srv, err = relay.New(rc)
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	t.Cleanup(func() { _ = r.srv.Close() })
	for _, l := range r.srv.Addrs() {
		if l.Network == relay.UDP {
			r.udp = l.Addr.String()
		}
	}
	return r
}

// reload calls SIGHUP's handler and returns what it logged.
func (r *reloadRig) reload(t *testing.T) string {
	t.Helper()
	before := len(r.log.String())
	reload(newLogger(&r.log, "text", "info"), r.args, r.st, r.srv)
	return r.log.String()[before:]
}

// client is a pion TURN client over UDP to the rig.
func (r *reloadRig) client(t *testing.T, username, password string) *turn.Client {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: r.udp, TURNServerAddr: r.udp, Conn: pc,
		Username: username, Password: password, Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	return c
}

// allocate returns the STUN error code of an Allocate with the credential (0: allocated).
func (r *reloadRig) allocate(t *testing.T, username, password string) (net.PacketConn, int) {
	t.Helper()
	c := r.client(t, username, password)
	pc, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { pc.Close() })
		return pc, 0
	}
	var te *stun.TurnError
	if errors.As(err, &te) {
		return nil, int(te.ErrorCodeAttr.Code)
	}
	t.Fatalf("allocate: %v", err)
	return nil, 0
}

type credential struct{ name, user, pass string }

func rest(name, secret string) credential {
	u, p := auth.MintREST([]byte(secret), "alice", time.Now().Add(time.Hour))
	return credential{name: name, user: u, pass: p}
}

// expect checks that each credential in ok allocates and each in refused gets 401.
func (r *reloadRig) expect(t *testing.T, ok, refused []credential) {
	t.Helper()
	for _, c := range ok {
		if _, code := r.allocate(t, c.user, c.pass); code != 0 {
			t.Errorf("%s: Allocate answered %d, want success", c.name, code)
		}
	}
	for _, c := range refused {
		if _, code := r.allocate(t, c.user, c.pass); code != 401 {
			t.Errorf("%s: Allocate answered %d, want 401", c.name, code)
		}
	}
}

// echo runs one round trip through a relayed conn to a loopback echo peer.
func echo(t *testing.T, relayed net.PacketConn, peer net.PacketConn, msg string) {
	t.Helper()
	buf := make([]byte, 512)
	for try := 0; try < 20; try++ { // the first packets race pion's permission set-up
		if _, err := relayed.WriteTo([]byte(msg), peer.LocalAddr()); err != nil {
			t.Fatalf("write through the relay: %v", err)
		}
		_ = relayed.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, _, err := relayed.ReadFrom(buf)
		if err == nil {
			if string(buf[:n]) != msg {
				t.Fatalf("echo %q, want %q", buf[:n], msg)
			}
			return
		}
	}
	t.Fatalf("no echo of %q through the relay", msg)
}

// permission asks a permission for 8.8.8.8 (never sent to) with a fresh allocation of c.
func (r *reloadRig) permission(t *testing.T, c credential) int {
	t.Helper()
	cl := r.client(t, c.user, c.pass)
	pc, err := cl.Allocate()
	if err != nil {
		t.Fatalf("%s: allocate: %v", c.name, err)
	}
	t.Cleanup(func() { pc.Close() })
	err = cl.CreatePermission(&net.UDPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 9})
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	if err != nil {
		t.Fatalf("CreatePermission: %v", err)
	}
	return 0
}

// SIGHUP re-reads the config file, the secret file and the users file, and applies secrets,
// users and the peer policy while allocations live; a file that does not load is refused
// with a log line and the running settings stay.
func TestReload(t *testing.T) {
	const secretA, secretB, secretC = "secret-A-0123456789", "secret-B-0123456789", "secret-C-0123456789"
	credA, credB, credC := rest("secret A", secretA), rest("secret B", secretB), rest("secret C", secretC)
	carol := credential{name: "static carol", user: "carol", pass: "carol-pw"}
	dave := credential{name: "static dave", user: "dave", pass: "dave-pw"}

	r := newReloadRig(t, "k1 "+secretA+"\n", "carol:carol-pw\n")
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")

	r.expect(t, []credential{credA, carol}, []credential{credB, dave})
	live, code := r.allocate(t, credA.user, credA.pass)
	if code != 0 {
		t.Fatalf("live allocation: %d", code)
	}
	echo(t, live, peer, "before reload")
	if code := r.permission(t, credA); code != 0 {
		t.Fatalf("permission for a public peer before reload: %d", code)
	}

	steps := []struct {
		name            string
		secrets, users  string // "" leaves the file as it is
		config          *string
		remove          string      // a file to delete before reloading
		secretsMode     os.FileMode // not 0: the secrets file's mode for this step
		logged          string
		ok, refused     []credential
		publicPeerCode  int
		liveStillRelays bool
	}{
		{
			name:    "rotate secret, users and policy",
			secrets: "k2 " + secretB + "\n", users: "dave:dave-pw\n",
			config: ptr("denied-peer-ip:\n  - 8.8.8.0/24\n"),
			logged: "SIGHUP: reloaded", ok: []credential{credB, dave}, refused: []credential{credA, carol},
			publicPeerCode: 403, liveStillRelays: true,
		},
		{
			name:    "broken secret file keeps the old settings",
			secrets: "k3 " + secretC + " trailing-field\n",
			logged:  "configuration not reloaded", ok: []credential{credB, dave}, refused: []credential{credA, credC},
			publicPeerCode: 403, liveStillRelays: true,
		},
		{
			name:    "duplicate key id keeps the old settings",
			secrets: "k3 " + secretC + "\nk3 " + secretA + "\n",
			logged:  "configuration not reloaded", ok: []credential{credB}, refused: []credential{credA, credC},
			publicPeerCode: 403,
		},
		{
			name:    "broken users file keeps the old settings",
			secrets: "k2 " + secretB + "\n", users: "no colon here\n",
			logged: "configuration not reloaded", ok: []credential{credB, dave}, refused: []credential{carol},
			publicPeerCode: 403,
		},
		{
			name:   "config file with an unknown key keeps the old settings",
			users:  "dave:dave-pw\n",
			config: ptr("no-such-key: 1\n"),
			logged: "configuration not reloaded", ok: []credential{credB, dave}, refused: []credential{credA},
			publicPeerCode: 403,
		},
		{
			name:   "config file with a bad peer prefix keeps the old settings",
			config: ptr("denied-peer-ip:\n  - 8.8.8.0/99\n"),
			logged: "configuration not reloaded", ok: []credential{credB}, refused: []credential{credA},
			publicPeerCode: 403,
		},
		{
			name:   "missing secret file keeps the old settings",
			config: ptr("denied-peer-ip:\n  - 8.8.8.0/24\n"),
			remove: "secrets",
			logged: "configuration not reloaded", ok: []credential{credB}, refused: []credential{credA},
			publicPeerCode: 403,
		},
		{
			name:    "secrets file every user can read keeps the old settings",
			secrets: "k3 " + secretC + "\n", secretsMode: 0o644,
			logged: `configuration not reloaded, keeping the running one" err="config: static-auth-secret-file: ` + r.secrets + ` holds secrets and is mode 0644`,
			ok:     []credential{credB}, refused: []credential{credA, credC},
			publicPeerCode: 403,
		},
		{
			name:    "two secrets during a rotation, policy lifted",
			secrets: "k3 " + secretC + "\nk2 " + secretB + "\n",
			config:  ptr(""),
			logged:  "SIGHUP: reloaded", ok: []credential{credC, credB, dave}, refused: []credential{credA},
			publicPeerCode: 0, liveStillRelays: true,
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.secrets != "" {
				r.write(t, r.secrets, st.secrets)
			}
			if st.users != "" {
				r.write(t, r.usersPath, st.users)
			}
			if st.config != nil {
				r.writeConfig(t, *st.config)
			}
			if st.secretsMode != 0 {
				if err := os.Chmod(r.secrets, st.secretsMode); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(r.secrets, 0o600) })
			}
			if st.remove != "" {
				if err := os.Remove(filepath.Join(r.dir, st.remove)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.write(t, filepath.Join(r.dir, st.remove), "k2 "+secretB+"\n") })
			}
			logged := r.reload(t)
			if !strings.Contains(logged, st.logged) {
				t.Fatalf("reload logged %q, want %q", logged, st.logged)
			}
			if strings.Contains(st.logged, "not reloaded") && !strings.Contains(logged, "level=ERROR") {
				t.Errorf("a refused reload is not logged as an error: %q", logged)
			}
			r.expect(t, st.ok, st.refused)
			ok := st.ok[0]
			if code := r.permission(t, ok); code != st.publicPeerCode {
				t.Errorf("permission for 8.8.8.8 answered %d, want %d", code, st.publicPeerCode)
			}
			if st.liveStillRelays {
				echo(t, live, peer, "after "+st.name)
			}
		})
	}
	if st := r.srv.Stats(); st.Ports.Held == 0 {
		t.Fatal("no allocation is live after the reloads")
	}
}

func ptr(s string) *string { return &s }
