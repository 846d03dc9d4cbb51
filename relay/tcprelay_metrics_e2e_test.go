//go:build linux

package relay

import (
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/metrics"
)

// The TCP relay's counts reach a scrape: a peer connection waiting for its ConnectionBind
// shows in the gauge, and once the bind timeout closes it the gauge is back to 0 and the
// timeout counted; every labelled series is there from the start.
func TestTCPRelayMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) {
		c.Metrics = m
		c.TCPConnectionBindTimeout = 300 * time.Millisecond
	})
	hs := httptest.NewServer(metrics.Handler(reg, s.Ready))
	defer hs.Close()

	got := scrape(t, hs.URL)
	for _, key := range []string{
		"avedge_tcp_relay_limit_refusals_total{limit=total}", "avedge_tcp_relay_limit_refusals_total{limit=per_user}",
		"avedge_tcp_relay_limit_refusals_total{limit=per_allocation}", "avedge_tcp_relay_policy_refusals_total{stage=connect}",
		"avedge_tcp_relay_policy_refusals_total{stage=inbound}", "avedge_tcp_relay_policy_refusals_total{stage=reload}",
		"avedge_tcp_relay_bind_timeouts_total{}", "avedge_tcp_relay_idle_closes_total{}", "avedge_tcp_relay_connections_active{}",
		"avedge_proxy_protocol_refusals_total{reason=not_from_proxy}", "avedge_proxy_protocol_refusals_total{reason=no_header}",
		"avedge_proxy_protocol_refusals_total{reason=invalid_header}", "avedge_proxy_protocol_refusals_total{reason=timeout}",
	} {
		if v, ok := got[key]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", key, v, ok)
		}
	}

	peer := listenPeer(t, "127.0.0.1:0")
	rc := newRawStreamAllocation(t, s, "carol")
	if _, err := rc.connect(peer.addr()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	pc := peer.accept(t)
	if v := scrape(t, hs.URL)["avedge_tcp_relay_connections_active{}"]; v != 1 {
		t.Errorf("connections active %v while the peer connection waits for its bind, want 1", v)
	}
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := pc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read: %v, want EOF once the bind timeout closes it", err)
	}
	pollUntil(t, "the connection gone from the gauge", func() bool {
		return scrape(t, hs.URL)["avedge_tcp_relay_connections_active{}"] == 0
	})
	if v := scrape(t, hs.URL)["avedge_tcp_relay_bind_timeouts_total{}"]; v != 1 {
		t.Errorf("bind timeouts %v, want 1", v)
	}
}
