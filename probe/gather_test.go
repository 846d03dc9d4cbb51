//go:build linux

package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/relay"
)

func inRange(t *testing.T, addr string, port int) {
	t.Helper()
	if addr != "127.0.0.1" || port < testMinPort || port > testMaxPort {
		t.Errorf("relay candidate %s:%d outside the edge range 127.0.0.1:%d-%d", addr, port, testMinPort, testMaxPort)
	}
}

func TestGatherAgainstEdge(t *testing.T) {
	s := startRelay(t)
	udp, tcp := relayAddr(s, relay.UDP), relayAddr(s, relay.TCP)
	urls := []string{"turn:" + udp + "?transport=udp", "turn:" + tcp + "?transport=tcp", "stun:" + udp}
	rep, err := Gather(context.Background(), testConfig(t, mustURLs(t, urls...), goodCreds()))
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	for _, typ := range []string{"host", "srflx", "relay"} {
		if rep.Count(typ) < 1 {
			t.Errorf("no %s candidate: %+v", typ, rep.Candidates)
		}
	}
	for _, c := range rep.Candidates {
		switch c.Type {
		case "host":
			if c.URL != "" {
				t.Errorf("host candidate attributed to %q", c.URL)
			}
		case "relay":
			inRange(t, c.Address, c.Port)
			if c.Transport != "udp" || c.RelatedAddress == "" {
				t.Errorf("relay candidate %+v: want udp with a related address", c)
			}
		case "srflx":
			if c.Address != "127.0.0.1" {
				t.Errorf("srflx %s, want 127.0.0.1 (loopback client)", c.Address)
			}
		}
	}
	want := []struct {
		name, url, kind, proto string
		relay                  int
	}{
		{"turn-udp", urls[0], "turn", "udp", 1},
		{"turn-tcp", urls[1], "turn", "tcp", 1},
		{"stun", urls[2], "stun", "", 0},
	}
	if len(rep.Servers) != len(want) {
		t.Fatalf("%d servers, want %d", len(rep.Servers), len(want))
	}
	for i, w := range want {
		sr := rep.Servers[i]
		t.Run(w.name, func(t *testing.T) {
			if sr.URL != w.url || sr.Kind != w.kind || sr.Relay != w.relay || sr.Failure != nil {
				t.Errorf("server %+v, want url %s kind %s relay %d no failure", sr, w.url, w.kind, w.relay)
			}
			if w.kind == "stun" && (sr.Srflx != 1 || sr.Direct.Mapped == "") {
				t.Errorf("stun server: srflx %d mapped %q", sr.Srflx, sr.Direct.Mapped)
			}
			if w.kind == "turn" {
				ap, err := netip.ParseAddrPort(sr.Direct.Relayed)
				if err != nil {
					t.Fatalf("direct allocate: %+v", sr.Direct)
				}
				inRange(t, ap.Addr().String(), int(ap.Port()))
			}
			for _, c := range rep.Candidates {
				if c.Type == "relay" && c.URL == w.url && c.RelayProtocol != w.proto {
					t.Errorf("relay from %s via %q, want %q", w.url, c.RelayProtocol, w.proto)
				}
			}
		})
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"host candidates", "srflx candidates", "relay candidates (2)", urls[1], "servers (3)"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("text output lacks %q:\n%s", s, b.String())
		}
	}
}

func TestGatherWrongCredential(t *testing.T) {
	s := startRelay(t)
	udp, tcp := relayAddr(s, relay.UDP), relayAddr(s, relay.TCP)
	bad := goodCreds()
	bad.Password = "not-the-password"
	cfg := testConfig(t, mustURLs(t, "turn:"+udp+"?transport=udp", "turn:"+tcp+"?transport=tcp"), bad)
	rep, err := Gather(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := rep.Count("relay"); n != 0 {
		t.Errorf("%d relay candidates with a wrong password", n)
	}
	for _, sr := range rep.Servers {
		if sr.Failure == nil || sr.Failure.Reason != ReasonAuth || sr.Failure.Code != 401 {
			t.Errorf("%s: failure %v, want auth 401", sr.URL, sr.Failure)
		}
	}
	err = rep.Err()
	if !errors.Is(err, ErrAuthRefused) || !errors.Is(err, ErrNoRelayCandidate) {
		t.Errorf("Err = %v, want ErrAuthRefused and ErrNoRelayCandidate", err)
	}
}

// closedPorts returns a UDP and a TCP address on 127.0.0.1 that nothing listens on.
func closedPorts(t *testing.T) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp = pc.LocalAddr().String()
	pc.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp = ln.Addr().String()
	ln.Close()
	return udp, tcp
}

func TestGatherUnreachable(t *testing.T) {
	closedUDP, closedTCP := closedPorts(t)
	// A bound socket that never answers: the server is black-holed.
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	tests := []struct {
		name, url string
		want      Reason
	}{
		{"closed udp port", "turn:" + closedUDP + "?transport=udp", ReasonRefused},
		{"closed tcp port", "turn:" + closedTCP + "?transport=tcp", ReasonRefused},
		{"closed stun port", "stun:" + closedUDP, ReasonRefused},
		{"black hole", "turn:" + hole.LocalAddr().String() + "?transport=udp", ReasonTimeout},
		{"unresolvable", "turn:no-such-host.invalid:3478?transport=udp", ReasonResolve},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, mustURLs(t, tt.url), goodCreds())
			cfg.Timeout = 1500 * time.Millisecond
			rep, err := Gather(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			sr := rep.Servers[0]
			if sr.Failure == nil || sr.Failure.Reason != tt.want {
				t.Errorf("failure %v, want %s", sr.Failure, tt.want)
			}
			// Bounded: Gather stops at the timeout (plus closing) whatever
			// the server does.
			if rep.Took > cfg.Timeout+2*time.Second {
				t.Errorf("Gather took %v with timeout %v", rep.Took, cfg.Timeout)
			}
			if !errors.Is(rep.Err(), ErrNoRelayCandidate) || errors.Is(rep.Err(), ErrAuthRefused) {
				t.Errorf("Err = %v, want ErrNoRelayCandidate only", rep.Err())
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no urls", Config{}, ErrNoURLs},
		{"turn without credentials", Config{URLs: mustURLs(t, "turn:127.0.0.1:3478")}, ErrNoCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Gather(context.Background(), tt.cfg); !errors.Is(err, tt.want) {
				t.Errorf("Gather: %v, want %v", err, tt.want)
			}
			if _, err := Check(context.Background(), tt.cfg, CheckConfig{}); !errors.Is(err, tt.want) {
				t.Errorf("Check: %v, want %v", err, tt.want)
			}
		})
	}
}
