//go:build linux

package relay

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// scrape fetches /metrics and returns the value of one sample, by name and exact labels.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// Issue 5: while an allocation is open, N packets of S bytes each way through a channel and
// through indications show in a scrape exactly; when it ends, the active gauges go back to 0
// and the counters stay.
func TestMetricsLiveThroughScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) { c.Metrics = m })
	hs := httptest.NewServer(metrics.Handler(reg, s.Ready))
	defer hs.Close()

	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	c := dialRaw(t, s.addrOf(UDP), username, password)
	if err := c.allocate(); err != nil {
		t.Fatal(err)
	}
	peer := newUDPPeer(t, "127.0.0.1:0")
	if err := c.channelBind(0x4000, peer.addr()); err != nil {
		t.Fatal(err)
	}
	const n, size = 25, 200
	for i := 0; i < n; i++ {
		data := payload(1, i, size)
		if err := c.sendChannelData(0x4000, data, false); err != nil {
			t.Fatal(err)
		}
		got, _, err := peer.recv(rawTimeout)
		if err != nil || string(got) != string(data) {
			t.Fatalf("peer got %d bytes (%v), want packet %d", len(got), err, i)
		}
		if err := peer.send(c.relayed, data); err != nil {
			t.Fatal(err)
		}
		if _, back, err := c.recvChannelData(); err != nil || string(back) != string(data) {
			t.Fatalf("client got %d bytes back (%v), want packet %d", len(back), err, i)
		}
	}
	ind := payload(2, 0, 100)
	if err := c.sendIndication(peer.addr(), ind); err != nil {
		t.Fatal(err)
	}
	if got, _, err := peer.recv(rawTimeout); err != nil || string(got) != string(ind) {
		t.Fatalf("indication did not reach the peer: %v", err)
	}

	// The slow path counts a packet once its send returned, which may be just after the
	// peer read it.
	pollUntil(t, "indication counted", func() bool {
		return s.Stats().Traffic[metrics.ClientToPeer][metrics.PathIndication].Packets == 1
	})
	live := scrape(t, hs.URL)
	want := map[string]float64{
		"avedge_relayed_packets_total{direction=client_to_peer,path=channel}":    n,
		"avedge_relayed_bytes_total{direction=client_to_peer,path=channel}":      n * size,
		"avedge_relayed_packets_total{direction=peer_to_client,path=channel}":    n,
		"avedge_relayed_bytes_total{direction=peer_to_client,path=channel}":      n * size,
		"avedge_relayed_packets_total{direction=client_to_peer,path=indication}": 1,
		"avedge_relayed_bytes_total{direction=client_to_peer,path=indication}":   100,
		"avedge_allocations_active{family=ipv4,transport=udp}":                   1,
		"avedge_channels_active{}":                    1,
		"avedge_permissions_active{}":                 1,
		"avedge_relay_ports{state=held}":              1,
		"avedge_allocation_attempts_total{result=ok}": 1,
	}
	for k, v := range want {
		if live[k] != v {
			t.Errorf("live scrape: %s = %v, want %v", k, live[k], v)
		}
	}
	if err := c.refresh(0); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "allocation gone", func() bool { return noAllocations(s) })
	after := scrape(t, hs.URL)
	for k, v := range want {
		switch {
		case strings.HasPrefix(k, "avedge_relayed_"), strings.HasPrefix(k, "avedge_allocation_attempts"):
			if after[k] != v {
				t.Errorf("after the allocation ended: counter %s = %v, want it unchanged at %v", k, after[k], v)
			}
		default:
			if after[k] != 0 {
				t.Errorf("after the allocation ended: gauge %s = %v, want 0", k, after[k])
			}
		}
	}
	found := false
	for k := range after {
		found = found || strings.HasPrefix(k, "avedge_build_info{")
	}
	if !found {
		t.Error("no avedge_build_info in the scrape")
	}
}
