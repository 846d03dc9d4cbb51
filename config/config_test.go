package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay"
)

func TestEmbeddedDefault(t *testing.T) {
	o, err := Parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := []relay.ListenerConfig{
		{Network: relay.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:3478")},
		{Network: relay.TCP, Addr: netip.MustParseAddrPort("127.0.0.1:3478")},
	}
	if len(st.Relay.Listeners) != len(want) {
		t.Fatalf("listeners %v, want %v", st.Relay.Listeners, want)
	}
	for i := range want {
		if st.Relay.Listeners[i] != want[i] {
			t.Fatalf("listener %d = %v, want %v", i, st.Relay.Listeners[i], want[i])
		}
	}
	if got := st.Relay.RelayIPs; len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("relay ips %v", got)
	}
	if st.Relay.MinPort != 50000 || st.Relay.MaxPort != 59999 {
		t.Fatalf("range %d-%d", st.Relay.MinPort, st.Relay.MaxPort)
	}
	if !st.GeneratedSecret || !st.AllLoopback || !st.Relay.Peers.AllowLoopback {
		t.Fatalf("generated=%v allLoopback=%v allowLoopback=%v", st.GeneratedSecret, st.AllLoopback, st.Relay.Peers.AllowLoopback)
	}
	if _, ok := st.Keyring.Newest(); !ok {
		t.Fatal("no secret generated")
	}
	if st.Service == nil || st.AuthListen != "127.0.0.1:8443" || st.GeneratedAPIKey == "" || len(st.Service.APIKeys) != 1 {
		t.Fatalf("credential service not on by default on 127.0.0.1:8443 with a generated key: %+v", st.Service)
	}
	// Issue 14, item 8: caps a public edge can run with (total: 0, the range's size, as in
	// relay.Config).
	if rc := st.Relay; rc.UserQuota != relay.DefaultUserQuota || rc.AllocationBandwidth != relay.DefaultAllocationBandwidth || rc.MaxAllocations != 0 {
		t.Fatalf("user-quota %d, max-bps %d, total-quota %d; want %d, %d, 0", rc.UserQuota, rc.AllocationBandwidth,
			rc.MaxAllocations, relay.DefaultUserQuota, relay.DefaultAllocationBandwidth)
	}
}

// The caps' defaults are shown by --help, and -1 lifts each, meaning unlimited in
// relay.Config too.
func TestQuotaDefaultsAndLifting(t *testing.T) {
	var out strings.Builder
	if _, err := Parse([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want flag.ErrHelp", err)
	}
	help := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		fmt.Sprintf("(-1: unlimited) (default %d)", relay.DefaultUserQuota),
		fmt.Sprintf("(-1: unlimited) (default %d)", relay.DefaultAllocationBandwidth),
		"0: every port, the relay range's size times the relay-ip addresses; -1: unlimited",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not say %q", want)
		}
	}
	o, err := Parse([]string{"--user-quota", "-1", "--total-quota", "-1", "--max-bps", "-1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	if rc := st.Relay; rc.UserQuota != -1 || rc.MaxAllocations != -1 || rc.AllocationBandwidth != -1 {
		t.Fatalf("user-quota %d, total-quota %d, max-bps %d; want -1 (unlimited) for each", rc.UserQuota, rc.MaxAllocations, rc.AllocationBandwidth)
	}
}

func TestEdgeFileAndFlagOverride(t *testing.T) {
	o, err := Parse([]string{"--config", "../testdata/config/edge.yaml", "--max-port", "50999"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	if st.Relay.MaxPort != 50999 || st.Relay.MinPort != 50000 {
		t.Fatalf("range %d-%d, want 50000-50999 (flag over file)", st.Relay.MinPort, st.Relay.MaxPort)
	}
	if got := st.Relay.ExternalIPs[netip.MustParseAddr("10.0.0.5")]; got != netip.MustParseAddr("198.51.100.20") {
		t.Fatalf("external-ip mapping %v", st.Relay.ExternalIPs)
	}
	if len(st.Relay.Listeners) != 3 || st.Relay.Listeners[2].Addr.Port() != 443 {
		t.Fatalf("listeners %v", st.Relay.Listeners)
	}
	if st.Relay.Peers.AllowLoopback || st.AllLoopback {
		t.Fatal("loopback peers allowed on a public edge")
	}
	if len(st.Keyring.Secrets()) != 2 || st.GeneratedSecret {
		t.Fatalf("secrets %d generated=%v", len(st.Keyring.Secrets()), st.GeneratedSecret)
	}
	if st.Relay.UserQuota != 10 || st.Relay.MaxAllocations != 5000 || st.Relay.Realm != "example.com" {
		t.Fatalf("quota/realm not applied: %+v", st.Relay)
	}
}

func TestRefusedWithTheKeyNamed(t *testing.T) {
	dir := t.TempDir()
	_, keyFile := writeKeyPair(t, t.TempDir())
	cases := []struct {
		name string
		args []string
		yaml string
		key  string
	}{
		{name: "unknown yaml key", yaml: "listening-prot: 3478\n", key: "listening-prot"},
		{name: "unknown flag", args: []string{"--min-prot", "1"}, key: "min-prot"},
		{name: "inverted range", args: []string{"--min-port", "60000", "--max-port", "50000"}, key: "min-port/max-port"},
		{name: "privileged range", args: []string{"--min-port", "80", "--max-port", "90"}, key: "min-port/max-port"},
		{name: "range past 65535", yaml: "max-port: 70000\n", key: "min-port/max-port"},
		{name: "bad listening ip", args: []string{"--listening-ip", "300.1.1.1"}, key: "listening-ip"},
		{name: "bad relay ip", args: []string{"--relay-ip", "nope"}, key: "relay-ip"},
		{name: "wildcard without relay-ip", args: []string{"--listening-ip", "0.0.0.0"}, key: "relay-ip"},
		{name: "external ip not a relay ip", args: []string{"--external-ip", "198.51.100.1/10.9.9.9"}, key: "external-ip"},
		{name: "missing cert file", args: []string{"--cert", filepath.Join(dir, "none.pem"), "--pkey", filepath.Join(dir, "none.key")}, key: "cert"},
		{name: "cert without key", args: []string{"--cert", "x.pem"}, key: "cert/pkey"},
		{name: "tls listener without cert", args: []string{"--listen", "tls/127.0.0.1:5349"}, key: "listen"},
		{name: "listener garbage", args: []string{"--listen", "127.0.0.1:443"}, key: "listen"},
		{name: "proxy listener without balancer", args: []string{"--listen", "tcp/127.0.0.1:4443,proxy"}, key: "proxy-protocol-from"},
		{name: "proxy on udp", args: []string{"--listen", "udp/127.0.0.1:4443,proxy", "--proxy-protocol-from", "127.0.0.1"}, key: "listen"},
		{name: "unknown listen option", args: []string{"--listen", "tcp/127.0.0.1:4443,proxyv2", "--proxy-protocol-from", "127.0.0.1"}, key: "listen"},
		{name: "bad balancer", args: []string{"--listen", "tcp/127.0.0.1:4443,proxy", "--proxy-protocol-from", "10.0.0.0/33"}, key: "proxy-protocol-from"},
		{name: "bad peer cidr", args: []string{"--denied-peer-ip", "10.0.0.0/40"}, key: "denied-peer-ip"},
		{name: "bad user", args: []string{"--user", "alice"}, key: "user"},
		{name: "missing secret file", args: []string{"--static-auth-secret-file", filepath.Join(dir, "nope")}, key: "static-auth-secret-file"},
		{name: "exposed service without api key", args: []string{"--auth-listen", "0.0.0.0:8443"}, key: "auth-api-key"},
		{name: "service cert without key", args: []string{"--auth-tls-cert", "x.pem"}, key: "auth-tls-cert/auth-tls-key"},
		{name: "service key without cert", yaml: "auth-tls-key: x.key\n", key: "auth-tls-cert/auth-tls-key"},
		{name: "missing service cert file", args: []string{"--auth-tls-cert", filepath.Join(dir, "none.pem"), "--auth-tls-key", keyFile}, key: "config: auth-tls-cert: "},
		{name: "anonymous service off loopback", args: []string{"--auth-listen", "0.0.0.0:8443", "--auth-allow-anonymous"}, key: "auth-insecure-anonymous"},
		{name: "bad metrics address", args: []string{"--metrics-listen", "localhost"}, key: "metrics-listen"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, key: "log-format"},
		{name: "everything off", args: []string{"--no-udp", "--no-tcp"}, key: "no-udp/no-tcp"},
		{name: "stray argument", args: []string{"serve"}, key: "serve"},
		{name: "bad duration", yaml: "drain-timeout: soon\n", key: "drain-timeout"},
		{name: "unknown data path", yaml: "data-path: dpdk\n", key: "data-path"},
		{name: "no permission at all", args: []string{"--max-permissions", "0"}, key: "max-permissions"},
		{name: "no channel at all", yaml: "max-channels: 0\n", key: "max-channels"},
		{name: "permission rate zero", args: []string{"--permission-rate", "0"}, key: "permission-rate"},
		{name: "user quota zero", args: []string{"--user-quota", "0"}, key: "user-quota"},
		{name: "max-bps zero", yaml: "max-bps: 0\n", key: "max-bps"},
		{name: "negative tcp cap", args: []string{"--max-tcp-connections-per-source", "-1"}, key: "max-tcp-connections"},
		{name: "zero error rate", args: []string{"--error-rate", "0"}, key: "error-rate"},
		{name: "zero binding rate", yaml: "binding-rate: 0\n", key: "binding-rate"},
		{name: "zero lockout failures", args: []string{"--user-lockout-failures", "0"}, key: "user-lockout-failures"},
		{name: "zero lockout time", args: []string{"--user-lockout-time", "0s"}, key: "user-lockout-time"},
		{name: "turn listener in relay range", args: []string{"--listening-port", "50001"}, key: "listening-port/tls-listening-port/listen"},
		{name: "metrics listener in relay range", args: []string{"--metrics-listen", "127.0.0.1:59999"}, key: "metrics-listen"},
		{name: "credential service in relay range", args: []string{"--auth-listen", "127.0.0.1:50000"}, key: "auth-listen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
				if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append([]string{"--config", p}, args...)
			}
			o, err := Parse(args, io.Discard)
			if err == nil {
				_, err = o.Build()
			}
			if err == nil {
				t.Fatalf("accepted; want an error naming %q", tc.key)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q does not name %q", err, tc.key)
			}
		})
	}
}

func TestHelpDocumentsEveryOption(t *testing.T) {
	var out strings.Builder
	_, err := Parse([]string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want flag.ErrHelp", err)
	}
	var o Options
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o.FlagSet(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(out.String(), "-"+f.Name) {
			t.Errorf("--help does not mention %s", f.Name)
		}
		if f.Usage == "" {
			t.Errorf("flag %s has no usage", f.Name)
		}
	})
}

// TestOptionTableCoversOptions checks that each field of Options is the field of exactly one
// row of optionTable, so that it has a flag, a YAML key and a default.
func TestOptionTableCoversOptions(t *testing.T) {
	var o Options
	base := reflect.ValueOf(&o).Pointer()
	typ := reflect.TypeOf(o)
	rows := map[uintptr][]string{}
	names := map[string]bool{}
	for _, op := range optionTable {
		if names[op.name] {
			t.Errorf("option %s: two rows", op.name)
		}
		names[op.name] = true
		p := reflect.ValueOf(op.field(&o))
		rows[p.Pointer()-base] = append(rows[p.Pointer()-base], op.name)
		if op.usage == "" {
			t.Errorf("option %s: no usage", op.name)
		}
	}
	exported := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() { // bookkeeping of Parse's, not an option
			if got := rows[f.Offset]; len(got) != 0 {
				t.Errorf("unexported field %s is the field of options %q", f.Name, got)
			}
			continue
		}
		exported++
		if got := rows[f.Offset]; len(got) != 1 {
			t.Errorf("field %s is the field of options %q, want exactly one", f.Name, got)
		}
	}
	if len(optionTable) != exported {
		t.Errorf("%d options for %d fields", len(optionTable), exported)
	}
}

// FuzzLoad feeds arbitrary YAML to the strict loader and Build: errors are fine, panics not.
func FuzzLoad(f *testing.F) {
	f.Add("listening-port: 3478\n")
	f.Add("min-port: 60000\nmax-port: 1\n")
	f.Add("external-ip: [1.2.3.4/5.6.7.8]\n")
	f.Add("listen: [tls/[::1]:443]\n")
	f.Add("allow-loopback-peers: false\nallowed-peer-ip: [10.0.0.0/8]\n")
	f.Add("&x\n<<: [*x, {realm: r}]\n")
	f.Add("realm: a\n<<: [&m {log-level: debug, <<: {min-port: 40000}}, *m]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		o := Defaults()
		if err := o.Load(strings.NewReader(doc), "fuzz"); err != nil {
			return
		}
		o.SecretFile, o.UsersFile, o.Cert, o.PKey, o.AuthAPIKeyFile, o.AuthTLSCert, o.AuthTLSKey = "", "", "", "", "", "", ""
		_, _ = o.Build()
	})
}

func TestWildcardUDPListensOnEachAddress(t *testing.T) {
	o, err := Parse([]string{"--listening-ip", "0.0.0.0", "--relay-ip", "127.0.0.1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	sawLoopback, sawTCPWildcard := false, false
	for _, l := range st.Relay.Listeners {
		if l.Network == relay.UDP && l.Addr.Addr().IsUnspecified() {
			t.Fatalf("UDP listener on the wildcard: %v", l)
		}
		sawLoopback = sawLoopback || (l.Network == relay.UDP && l.Addr.Addr() == netip.MustParseAddr("127.0.0.1"))
		sawTCPWildcard = sawTCPWildcard || (l.Network == relay.TCP && l.Addr.Addr().IsUnspecified())
	}
	if !sawLoopback || !sawTCPWildcard {
		t.Fatalf("listeners %v: want UDP per address (127.0.0.1 among them) and TCP on the wildcard", st.Relay.Listeners)
	}
}

// TestZeroMeansTheSameInRelayConfig hands relay.New the Settings Build derives, with Workers
// and PortQuarantine at Go's zero: the relay must read them as the options' zero values read
// (workers 0: one per two cores; port-quarantine 0: none), so that Build copies them through.
// TestPerAllocationCaps: the caps' defaults reach relay.Config as documented there, and -1
// means unlimited in both.
func TestPerAllocationCaps(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		perms, chans int
		rate         float64
	}{
		{args: nil, perms: relay.DefaultMaxPermissions, chans: relay.DefaultMaxChannels, rate: relay.DefaultPermissionRate},
		{args: []string{"--max-permissions", "-1", "--max-channels", "-1", "--permission-rate", "-1"}, perms: -1, chans: -1, rate: -1},
		{args: []string{"--max-permissions", "200", "--max-channels", "16", "--permission-rate", "0.5"}, perms: 200, chans: 16, rate: 0.5},
	} {
		o, err := Parse(append([]string{"--metrics-listen", "", "--auth-listen", ""}, tc.args...), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		st, err := o.Build()
		if err != nil {
			t.Fatal(err)
		}
		if rc := st.Relay; rc.MaxPermissions != tc.perms || rc.MaxChannels != tc.chans || rc.PermissionRate != tc.rate {
			t.Errorf("%v: relay gets %d permissions, %d channels, rate %v; want %d, %d, %v",
				tc.args, rc.MaxPermissions, rc.MaxChannels, rc.PermissionRate, tc.perms, tc.chans, tc.rate)
		}
	}
}

func TestZeroMeansTheSameInRelayConfig(t *testing.T) {
	o, err := Parse([]string{"--listening-port", "0", "--no-tcp", "--min-port", "32200", "--max-port", "32209",
		"--metrics-listen", "", "--auth-listen", "", "--workers", "0", "--port-quarantine", "0",
		"--data-path", "epoll"}, io.Discard) // auto would attach the kernel fast path to this namespace's lo
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	rc := st.Relay
	if rc.Workers != 0 || rc.PortQuarantine != 0 {
		t.Fatalf("Build turned workers 0 into %d and port-quarantine 0 into %v; want both copied through", rc.Workers, rc.PortQuarantine)
	}
	var logged lockedBuilder
	rc.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	srv, err := relay.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	want := max(1, runtime.NumCPU()/2)
	if !strings.Contains(logged.String(), fmt.Sprintf("workers=%d ", want)) {
		t.Errorf("workers 0 on %d cores: want %d forwarding loops, log says:\n%s", runtime.NumCPU(), want, logged.String())
	}

	sec, _ := st.Keyring.Newest()
	user, pass := auth.MintREST(sec.Value, "zero", time.Now().Add(time.Hour))
	server := srv.Addrs()[0].Addr.String()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: pc,
		Username: user, Password: pass, Realm: rc.Realm})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err := alloc.Close(); err != nil {
		t.Fatal(err)
	}
	// The relay releases the port after it has answered the Refresh: poll, bounded.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(3 * time.Second); srv.Stats().Ports.Held != 0 && time.Now().Before(deadline); {
		<-tick.C
	}
	if p := srv.Stats().Ports; p.Held != 0 || p.Quarantined != 0 {
		t.Fatalf("after the allocation's release: %d ports held, %d in quarantine; want 0 and 0 (port-quarantine 0: none)", p.Held, p.Quarantined)
	}
}

// The TCP/TLS bounds reach relay.Config: the defaults as documented, an option's 0 (unlimited)
// as relay.Config's negative, timeouts copied through (0: relay.Config's default, -1: none).
func TestTCPLimitOptions(t *testing.T) {
	for _, tc := range []struct {
		name              string
		args              []string
		total, perSource  int
		first, idle, hand time.Duration
		write             time.Duration
	}{
		{name: "defaults", total: 10000, perSource: 256, first: 10 * time.Second, hand: 10 * time.Second, write: 30 * time.Second},
		{name: "unlimited and none", args: []string{"--max-tcp-connections", "0", "--max-tcp-connections-per-source", "0",
			"--tcp-first-message-timeout", "-1s", "--tcp-idle-timeout", "-1s", "--tls-handshake-timeout", "-1s", "--tcp-write-timeout", "-1s"},
			total: -1, perSource: -1, first: -time.Second, idle: -time.Second, hand: -time.Second, write: -time.Second},
		{name: "set", args: []string{"--max-tcp-connections", "500", "--max-tcp-connections-per-source", "8",
			"--tcp-first-message-timeout", "3s", "--tcp-idle-timeout", "2h", "--tls-handshake-timeout", "4s", "--tcp-write-timeout", "5s"},
			total: 500, perSource: 8, first: 3 * time.Second, idle: 2 * time.Hour, hand: 4 * time.Second, write: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Parse(append([]string{"--metrics-listen", "", "--auth-listen", ""}, tc.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st, err := o.Build()
			if err != nil {
				t.Fatal(err)
			}
			rc := st.Relay
			if rc.MaxStreamConns != tc.total || rc.MaxStreamConnsPerSource != tc.perSource {
				t.Errorf("caps %d, %d per source; want %d, %d", rc.MaxStreamConns, rc.MaxStreamConnsPerSource, tc.total, tc.perSource)
			}
			if rc.StreamWriteTimeout != tc.write {
				t.Errorf("write timeout %v, want %v", rc.StreamWriteTimeout, tc.write)
			}
			if rc.StreamFirstMessageTimeout != tc.first || rc.StreamIdleTimeout != tc.idle || rc.TLSHandshakeTimeout != tc.hand {
				t.Errorf("timeouts first %v, idle %v, handshake %v; want %v, %v, %v",
					rc.StreamFirstMessageTimeout, rc.StreamIdleTimeout, rc.TLSHandshakeTimeout, tc.first, tc.idle, tc.hand)
			}
		})
	}
}

// TestProxyProtocolListen: ",proxy" after a tcp or tls listen entry makes it a PROXY protocol
// listener for the balancers of proxy-protocol-from; the other listeners stay as they are.
func TestProxyProtocolListen(t *testing.T) {
	o, err := Parse([]string{"--metrics-listen", "", "--auth-listen", "", "--listen", "tcp/127.0.0.1:4443,proxy",
		"--listen", "tcp/127.0.0.1:4444", "--proxy-protocol-from", "10.0.0.0/8", "--proxy-protocol-from", "192.0.2.7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	proxied := map[string]bool{}
	for _, l := range st.Relay.Listeners {
		proxied[string(l.Network)+"/"+l.Addr.String()] = l.ProxyProtocol
	}
	want := map[string]bool{"udp/127.0.0.1:3478": false, "tcp/127.0.0.1:3478": false, "tcp/127.0.0.1:4443": true, "tcp/127.0.0.1:4444": false}
	if !maps.Equal(proxied, want) {
		t.Errorf("listeners %v, want %v", proxied, want)
	}
	if got := fmt.Sprint(st.Relay.ProxyProtocolFrom); got != "[10.0.0.0/8 192.0.2.7/32]" {
		t.Errorf("balancers %s", got)
	}

	o, err = Parse([]string{"--metrics-listen", "", "--auth-listen", "", "--proxy-protocol-from", "10.0.0.0/8"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = o.Build(); err != nil || !strings.Contains(strings.Join(st.Warnings, "\n"), "proxy-protocol-from is set but no listen entry") {
		t.Errorf("balancers without a proxy listener: %v, warnings %q", err, st.Warnings)
	}
}

// lockedBuilder is a strings.Builder the relay's goroutines may log to while the test reads.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestYAMLErrorsNameTheKey checks that a YAML error names the key whose value is wrong, from
// the position yaml.v3 gives the key's node (several keys may share a line: a flow mapping).
func TestYAMLErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{name: "type error in a flow mapping", doc: "{min-port: abc, realm: x}\n", want: "key min-port: yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `abc` into int"},
		{name: "unknown key in a flow mapping", doc: "{realm: x, listening-prot: 1, min-port: 50000}\n", want: "key listening-prot: line 1, column 12: unknown key"},
		{name: "type error below a list", doc: "relay-ip:\n  - 127.0.0.1\ndrain-timeout: soon\n", want: "key drain-timeout: yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str `soon` into time.Duration"},
		{name: "key given twice", doc: "realm: a\nmin-port: 50000\nrealm: b\n", want: `key realm: line 3: mapping key "realm" already defined at line 1`},
		{name: "not a mapping", doc: "- realm\n", want: "line 1, column 1: want a mapping of keys to values, not !!seq"},
		{name: "mapping merged into itself", doc: "&x\n<<: *x\nrealm: q\n", want: "line 1, column 1: a mapping merged into itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults()
			err := o.Load(strings.NewReader(tc.doc), "test.yaml")
			want := "config: test.yaml: " + tc.want + " (keys are the flag names of avedge --help)"
			if err == nil || err.Error() != want {
				t.Fatalf("error %q\nwant  %q", err, want)
			}
		})
	}
}

// TestYAMLMerge checks that a merge key ("<<") sets what the mapping does not set itself, the
// first merged mapping first, as yaml.v3 does for a struct.
func TestYAMLMerge(t *testing.T) {
	o := Defaults()
	doc := "realm: own\n<<: [{realm: merged, min-port: 40000, max-port: 41000}, {min-port: 1, log-level: debug}]\n"
	if err := o.Load(strings.NewReader(doc), "merge.yaml"); err != nil {
		t.Fatal(err)
	}
	if o.Realm != "own" || o.MinPort != 40000 || o.MaxPort != 41000 || o.LogLevel != "debug" {
		t.Fatalf("realm %q min-port %d max-port %d log-level %q; want own, 40000, 41000, debug", o.Realm, o.MinPort, o.MaxPort, o.LogLevel)
	}
}

// TestDeriveWithoutIO derives settings from given host addresses and file contents: a UDP
// wildcard becomes one listener per address of its family (not link-local), the host's
// addresses are needed only for a wildcard, and the files' secrets and users are used.
func TestDeriveWithoutIO(t *testing.T) {
	host := hostAddrs{addrs: []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fe80::1"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.7"),
	}}
	o := Defaults()
	o.ListeningIPs, o.RelayIPs, o.Listen = []string{"0.0.0.0"}, []string{"10.0.0.1"}, []string{"udp/[::]:3479"}
	in := &inputs{host: host, fileSecrets: []auth.Secret{{ID: "k1", Value: []byte("0123456789abcdef0123456789abcdef")}},
		fileUsers: map[string]string{"bob": "pw"}, randomSecret: "unused", randomAPIKey: "generated"}
	st, err := o.derive(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range st.Relay.Listeners {
		got = append(got, string(l.Network)+"/"+l.Addr.String())
	}
	want := []string{"udp/10.0.0.1:3478", "udp/127.0.0.1:3478", "udp/192.0.2.7:3478", "tcp/0.0.0.0:3478", "udp/[2001:db8::1]:3479"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("listeners %v, want %v", got, want)
	}
	if st.GeneratedSecret || len(st.Keyring.Secrets()) != 1 || st.Users["bob"] != "pw" || st.GeneratedAPIKey != "generated" {
		t.Fatalf("generated secret %v, secrets %d, users %v, generated API key %q", st.GeneratedSecret, len(st.Keyring.Secrets()), st.Users, st.GeneratedAPIKey)
	}

	broken := &inputs{host: hostAddrs{err: errors.New("no netlink")}, randomSecret: "0123456789abcdef0123456789abcdef", randomAPIKey: "k"}
	o.ListeningIPs, o.Listen = []string{"127.0.0.1"}, nil
	if _, err := o.derive(broken); err != nil {
		t.Fatalf("no wildcard, yet the host's addresses were needed: %v", err)
	}
	o.ListeningIPs = []string{"0.0.0.0"}
	if _, err := o.derive(broken); err == nil || !strings.Contains(err.Error(), "listening-ip: 0.0.0.0: no netlink") {
		t.Fatalf("wildcard without the host's addresses: %v", err)
	}
}

// The TCP relay (RFC 6062) options reach relay.Config as given.
func TestTCPRelayOptions(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		args                   []string
		off                    bool
		total, perUser, perAll int
		idle                   time.Duration
	}{
		{name: "defaults", total: 10000, perUser: 256, perAll: 64},
		{name: "set", args: []string{"--no-tcp-relay", "--max-tcp-relay-connections", "-1", "--max-tcp-relay-connections-per-user", "3",
			"--max-tcp-relay-connections-per-allocation", "2", "--tcp-relay-idle-timeout", "90s"},
			off: true, total: -1, perUser: 3, perAll: 2, idle: 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Parse(append([]string{"--metrics-listen", "", "--auth-listen", ""}, tc.args...), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st, err := o.Build()
			if err != nil {
				t.Fatal(err)
			}
			rc := st.Relay
			if rc.NoTCPRelay != tc.off || rc.MaxTCPRelayConns != tc.total || rc.MaxTCPRelayConnsPerUser != tc.perUser ||
				rc.MaxTCPRelayConnsPerAllocation != tc.perAll || rc.TCPRelayIdleTimeout != tc.idle {
				t.Errorf("got off %v, limits %d/%d/%d, idle %v; want %v, %d/%d/%d, %v", rc.NoTCPRelay, rc.MaxTCPRelayConns,
					rc.MaxTCPRelayConnsPerUser, rc.MaxTCPRelayConnsPerAllocation, rc.TCPRelayIdleTimeout,
					tc.off, tc.total, tc.perUser, tc.perAll, tc.idle)
			}
		})
	}
}
