//go:build linux

package probe

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/avedge/avedge/relay"
)

func TestGatherAgainstEdge(t *testing.T) {
	s := startRelay(t)
	udp, tcp := relayAddr(s, relay.UDP), relayAddr(s, relay.TCP)
	cfg := testConfig(t, mustURLs(t, "turn:"+udp+"?transport=udp", "turn:"+tcp+"?transport=tcp", "stun:"+udp), goodCreds())
	rep, err := Gather(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(rep, "", " ")
	t.Logf("%s", js)
}

func TestCheckQuick(t *testing.T) {
	s := startRelay(t)
	udp := relayAddr(s, relay.UDP)
	cfg := testConfig(t, mustURLs(t, "turn:"+udp+"?transport=udp"), goodCreds())
	rep, err := Check(context.Background(), cfg, CheckConfig{Count: 50})
	js, _ := json.MarshalIndent(rep, "", " ")
	t.Logf("%s %v", js, err)
}
