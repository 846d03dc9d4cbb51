//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay"
)

const secret = "cmd-test-secret-0123456789"

var show = flag.Bool("show", false, "print the command's output (for the README)")

// edge runs an in-process avedge and its credential service on loopback.
func edge(t *testing.T) (udp, tcp, service string) {
	t.Helper()
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	keyring := auth.NewKeyring(auth.Secret{ID: "k1", Value: []byte(secret)})
	s, err := relay.New(relay.Config{
		Listeners: []relay.ListenerConfig{{Network: relay.UDP, Addr: lo}, {Network: relay.TCP, Addr: lo}},
		RelayIPs:  []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:   18000, MaxPort: 18999,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: keyring}),
		Peers:     relay.PeerPolicy{AllowLoopback: true},
		Workers:   1,
		DataPath:  relay.DataPathEpoll, // auto would attach the kernel fast path to this namespace's lo
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	for _, l := range s.Addrs() {
		switch l.Network {
		case relay.UDP:
			udp = l.Addr.String()
		case relay.TCP:
			tcp = l.Addr.String()
		}
	}
	port := func(a string) int { p, _ := strconv.Atoi(a[strings.LastIndexByte(a, ':')+1:]); return p }
	svc, err := auth.NewService(auth.ServiceConfig{
		Keyring: keyring,
		Relays:  []auth.RelayInfo{{Location: auth.LocationInternet, HostName: "127.0.0.1", UDPPort: port(udp), TCPPort: port(tcp)}},
		APIKeys: []string{"key1"},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc)
	t.Cleanup(hs.Close)
	return udp, tcp, hs.URL
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	if *show {
		t.Logf("$ avedge-probe %s\n%s%s(exit %d)", strings.Join(args, " "), out.String(), errb.String(), code)
	}
	return code, out.String(), errb.String()
}

func TestRun(t *testing.T) {
	udp, tcp, service := edge(t)
	closed := func() string {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().String()
	}()
	turnU, turnT := "turn:"+udp+"?transport=udp", "turn:"+tcp+"?transport=tcp"
	tests := []struct {
		name     string
		args     []string
		want     int
		contains []string
	}{
		{"secret", []string{"--secret", secret, "--url", turnU, "--url", turnT, "--url", "stun:" + udp, "--include-loopback"}, exitOK,
			[]string{"host candidates", "srflx candidates", "relay candidates (2)", turnT}},
		{"service json with check", []string{"--service", service, "--api-key", "key1", "--include-loopback", "--check", "--count", "20"}, exitOK,
			[]string{"relay candidates (2)", "relay-only check", "selected pair", "p99"}},
		{"service mras", []string{"--service", service, "--api-key", "key1", "--mras", "--identity", "sip:alice@example.com"}, exitOK,
			[]string{"username mras1:k1:", "relay candidates (2)"}},
		{"wrong secret", []string{"--secret", "nope", "--url", turnU}, exitAuthRefused, []string{"FAILED auth (401)"}},
		{"wrong password", []string{"--username", "alice", "--password", "x", "--url", turnU}, exitAuthRefused, []string{"FAILED auth (401)"}},
		{"wrong api key", []string{"--service", service, "--api-key", "bad"}, exitAuthRefused, nil},
		{"unreachable relay", []string{"--secret", secret, "--url", "turn:" + closed + "?transport=udp", "--timeout", "2s"}, exitNoRelay, []string{"FAILED refused"}},
		{"usage: no url", []string{"--secret", secret}, exitUsage, nil},
		{"usage: two sources", []string{"--secret", secret, "--username", "u", "--password", "p", "--url", turnU}, exitUsage, nil},
		{"usage: half credentials", []string{"--username", "u", "--url", turnU}, exitUsage, nil},
		{"usage: bad url", []string{"--secret", secret, "--url", "http://x"}, exitUsage, nil},
		{"usage: bad network", []string{"--secret", secret, "--url", turnU, "--network", "sctp"}, exitUsage, nil},
		{"usage: bad size", []string{"--secret", secret, "--url", turnU, "--size", "5000"}, exitUsage, nil},
		{"usage: stray argument", []string{"--secret", secret, "--url", turnU, "extra"}, exitUsage, nil},
		{"help", []string{"-h"}, exitOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, out, errOut)
			}
			for _, s := range tt.contains {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestRunJSON(t *testing.T) {
	udp, _, _ := edge(t)
	code, out, errOut := runCmd(t, "--json", "--secret", secret, "--url", "turn:"+udp+"?transport=udp", "--check", "--count", "10")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var doc struct {
		Credentials struct{ Username string }
		Gather      struct {
			Candidates []struct{ Type, URL string }
			Servers    []struct{ Relay int }
		}
		Check struct {
			Directions []struct{ Sent, Received int }
		}
		Exit int
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if strings.Contains(out, `"password"`) {
		t.Error("the JSON output carries the password")
	}
	if doc.Credentials.Username == "" || len(doc.Gather.Servers) != 1 || doc.Gather.Servers[0].Relay != 1 || doc.Exit != 0 {
		t.Errorf("document %+v", doc)
	}
	if len(doc.Check.Directions) != 2 || doc.Check.Directions[0].Received != 10 || doc.Check.Directions[1].Received != 10 {
		t.Errorf("check %+v", doc.Check)
	}
}
