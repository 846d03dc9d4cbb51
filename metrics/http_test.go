package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

func TestHandler(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	m.SetSource(SourceFunc(fullSnapshot))

	var ready atomic.Bool
	h := Handler(reg, func() (bool, string) {
		if ready.Load() {
			return true, ""
		}
		return false, "listeners not up"
	})

	tests := []struct {
		name       string
		method     string
		path       string
		ready      bool
		wantStatus int
		wantBody   string // substring
	}{
		{"healthz", http.MethodGet, "/healthz", false, http.StatusOK, "ok\n"},
		{"healthz head", http.MethodHead, "/healthz", false, http.StatusOK, ""},
		{"readyz when ready", http.MethodGet, "/readyz", true, http.StatusOK, "ok\n"},
		{"readyz when not ready", http.MethodGet, "/readyz", false, http.StatusServiceUnavailable, "listeners not up\n"},
		{"metrics", http.MethodGet, "/metrics", false, http.StatusOK, `avedge_relayed_bytes_total{direction="client_to_peer",path="channel"} 1120`},
		{"metrics build info", http.MethodGet, "/metrics", false, http.StatusOK, `avedge_build_info{goversion="go1.26.0",pion_version="v5.1.3",version="1.2.3"} 1`},
		{"post refused", http.MethodPost, "/healthz", false, http.StatusMethodNotAllowed, ""},
		{"unknown path", http.MethodGet, "/debug/pprof/", false, http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ready.Store(tc.ready)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tc.wantStatus, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tc.wantBody) {
				t.Fatalf("body does not contain %q:\n%s", tc.wantBody, rec.Body.String())
			}
		})
	}
}

func TestHandlerReadyzReasons(t *testing.T) {
	tests := []struct {
		name       string
		ready      func() (bool, string)
		wantStatus int
		wantBody   string
	}{
		{"nil ready is ready", nil, http.StatusOK, "ok\n"},
		{"draining", func() (bool, string) { return false, "draining" }, http.StatusServiceUnavailable, "draining\n"},
		{"empty reason", func() (bool, string) { return false, "" }, http.StatusServiceUnavailable, "not ready\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Handler(emptyGatherer{}, tc.ready).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.wantStatus || rec.Body.String() != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.wantStatus, tc.wantBody)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
		})
	}
}

// TestHandlerOverLoopback scrapes through a real socket, as Prometheus does,
// and checks that each scrape reads the Source anew.
func TestHandlerOverLoopback(t *testing.T) {
	m, reg := newTestMetrics(t, fixedOptions)
	var packets atomic.Uint64
	m.SetSource(SourceFunc(func(s *Snapshot) {
		s.Traffic[PeerToClient][PathIndication].Packets = packets.Load()
	}))
	srv := httptest.NewServer(Handler(reg, nil)) // binds 127.0.0.1
	defer srv.Close()

	const line = `avedge_relayed_packets_total{direction="peer_to_client",path="indication"} `
	for _, step := range []struct {
		set  uint64
		want string
	}{{0, "0"}, {3, "3"}, {250, "250"}} {
		packets.Store(step.set)
		want := step.want
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type = %q, want text/plain", ct)
		}
		if !strings.Contains(string(body), line+want+"\n") {
			t.Fatalf("scrape lacks %q", line+want)
		}
	}
}

// emptyGatherer is a Gatherer with nothing to gather.
type emptyGatherer struct{}

func (emptyGatherer) Gather() ([]*dto.MetricFamily, error) { return nil, nil }
