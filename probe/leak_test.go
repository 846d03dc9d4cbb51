//go:build linux

package probe

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/relay"
)

// TestNoGoroutineLeft: once Gather and Check return, the goroutines they (and
// pion under them) started end; pion's read loops end on their socket's
// close, a moment after, so the count is polled for a bounded time.
func TestNoGoroutineLeft(t *testing.T) {
	s := startRelay(t)
	udp, tcp := relayAddr(s, relay.UDP), relayAddr(s, relay.TCP)
	closedUDP, _ := closedPorts(t)
	cfg := testConfig(t, mustURLs(t, "turn:"+udp+"?transport=udp", "turn:"+tcp+"?transport=tcp", "stun:"+udp, "turn:"+closedUDP+"?transport=udp"), goodCreds())
	before := runtime.NumGoroutine()
	if _, err := Gather(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(context.Background(), cfg, CheckConfig{Count: 5}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var ours []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "pion") || strings.Contains(g, "probe.") {
				ours = append(ours, g)
			}
		}
		t.Errorf("%d goroutines after, %d before:\n%s", n, before, strings.Join(ours, "\n\n"))
	}
}
