//go:build linux

package relay

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// lineWriter hands each line a handler writes to lines.
type lineWriter chan []byte

func (w lineWriter) Write(b []byte) (int, error) {
	w <- append([]byte(nil), b...)
	return len(b), nil
}

// An allocation made and released logs one "allocation created" and one "allocation deleted"
// line at Info, with the client, transport, user and relay (and the lifetime and reason of
// its end) as attributes of the record the handler gets.
func TestAllocationEventLines(t *testing.T) {
	lines := make(lineWriter, 256)
	s := startServer(t, func(c *Config) {
		c.MinPort, c.MaxPort = 21100, 21199
		c.Logger = slog.New(slog.NewJSONHandler(lines, nil))
	})
	c := newClient(t, s, "alice")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	relayAddr := relay.LocalAddr().String()
	next := func(msg string) map[string]any {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case b := <-lines:
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("line %q: %v", b, err)
				}
				if m["msg"] == msg {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q line", msg)
			}
		}
	}
	m := next("allocation created")
	client, _ := m["client"].(string)
	if ap, err := netip.ParseAddrPort(client); err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("allocation created: client %q, want the client's 127.0.0.1 address and port", client)
	}
	want := map[string]any{"level": "INFO", "client": client, "user": "alice", "relay": relayAddr}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("allocation created: %s = %v, want %v (line %v)", k, m[k], v, m)
		}
	}
	if m["transport"] != "udp" || m["time"] == nil || len(m) != 7 {
		t.Errorf("allocation created: %v: want transport udp, a time, and nothing else", m)
	}
	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	m = next("allocation deleted")
	for k, v := range want {
		if m[k] != v {
			t.Errorf("allocation deleted: %s = %v, want %v (line %v)", k, m[k], v, m)
		}
	}
	if _, err := time.ParseDuration(m["lifetime"].(string)); err != nil || m["reason"] == "" || len(m) != 8 {
		t.Errorf("allocation deleted: %v: want a lifetime, a reason, and nothing else", m)
	}
}
