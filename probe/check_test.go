//go:build linux

package probe

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/relay"
)

func TestCheckThroughEdge(t *testing.T) {
	s := startRelay(t)
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0") // a relay that never answers
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	for _, tt := range []struct {
		name  string
		urls  []string
		proto string
	}{
		{"udp", []string{"turn:" + relayAddr(s, relay.UDP) + "?transport=udp"}, "udp"},
		{"tcp", []string{"turn:" + relayAddr(s, relay.TCP) + "?transport=tcp"}, "tcp"},
		// Candidates trickle: a dead relay in the list does not hold the call.
		{"dead relay beside a live one", []string{"turn:" + hole.LocalAddr().String() + "?transport=udp", "turn:" + relayAddr(s, relay.UDP) + "?transport=udp"}, "udp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cc := CheckConfig{Count: 40, Size: 300}
			cfg := testConfig(t, mustURLs(t, tt.urls...), goodCreds())
			cfg.Timeout = 3 * time.Second
			rep, err := Check(context.Background(), cfg, cc)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if rep.Local.Type != "relay" || rep.Remote.Type != "relay" {
				t.Errorf("selected pair %s <-> %s, want relay <-> relay", rep.Local.Type, rep.Remote.Type)
			}
			inRange(t, rep.Local.Address, rep.Local.Port)
			inRange(t, rep.Remote.Address, rep.Remote.Port)
			if rep.Local.RelayProtocol != tt.proto {
				t.Errorf("local relay via %q, want %q", rep.Local.RelayProtocol, tt.proto)
			}
			if len(rep.Directions) != 2 {
				t.Fatalf("directions %+v", rep.Directions)
			}
			for _, d := range rep.Directions {
				// Every ping crossed the relay, was checked byte for byte,
				// echoed, and checked again on the way back.
				if d.Sent != cc.Count || d.Received != cc.Count || d.Corrupt != 0 || d.Duplicates != 0 {
					t.Errorf("%s: %+v, want %d sent and echoed byte-exact", d.Name, d, cc.Count)
				}
			}
			if rep.RTT.N != 2*cc.Count || rep.RTT.Min <= 0 || rep.RTT.P50 > rep.RTT.P99 || rep.RTT.P99 > rep.RTT.Max {
				t.Errorf("rtt %+v", rep.RTT)
			}
			var b strings.Builder
			_ = rep.WriteText(&b)
			if !strings.Contains(b.String(), "selected pair") || !strings.Contains(b.String(), "p99") {
				t.Errorf("text:\n%s", b.String())
			}
		})
	}
}

func TestCheckWrongCredential(t *testing.T) {
	s := startRelay(t)
	bad := goodCreds()
	bad.Password = "wrong"
	_, err := Check(context.Background(), testConfig(t, mustURLs(t, "turn:"+relayAddr(s, relay.UDP)+"?transport=udp"), bad), CheckConfig{Count: 1})
	if !errors.Is(err, ErrNoRelayCandidate) {
		t.Errorf("Check = %v, want ErrNoRelayCandidate", err)
	}
}
