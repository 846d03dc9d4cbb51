package pool

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestScore(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Load
		want float64
	}{
		{"idle", Load{Healthy: true, PortsTotal: 100, PortsFree: 100}, 0},
		{"ports", Load{Healthy: true, PortsTotal: 100, PortsFree: 75, CPU: 0.1}, 0.25},
		{"cpu is the scarcest", Load{Healthy: true, PortsTotal: 100, PortsFree: 90, CPU: 0.5}, 0.5},
		{"allocation cap", Load{Healthy: true, PortsTotal: 100, PortsFree: 90, Allocations: 8, MaxAllocations: 10}, 0.8},
		{"bandwidth declared", Load{Healthy: true, RelayedBPS: 6e8, MaxBPS: 1e9}, 0.6},
		{"bandwidth not declared", Load{Healthy: true, RelayedBPS: 6e8}, 0},
		{"clamped", Load{Healthy: true, CPU: 3}, 1},
		{"unhealthy", Load{PortsTotal: 100, PortsFree: 100}, 1},
		{"draining", Load{Healthy: true, Draining: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.Score(); got != tc.want {
				t.Errorf("Score() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseLoad(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		ok        bool
	}{
		{"valid", `{"instance":"a1","healthy":true,"allocations":3,"ports_free":90,"ports_total":100,"relays":[{"location":"internet","host":"edge1.example.com","udp_port":3478}],"alternates":["192.0.2.1:3478"]}`, true},
		{"no instance", `{"healthy":true}`, false},
		{"free above total", `{"instance":"a","ports_free":5,"ports_total":4}`, false},
		{"negative cpu", `{"instance":"a","cpu":-1}`, false},
		{"bad location", `{"instance":"a","relays":[{"location":"moon","host":"h","udp_port":1}]}`, false},
		{"no port", `{"instance":"a","relays":[{"location":"internet","host":"h"}]}`, false},
		{"bad alternate", `{"instance":"a","alternates":["edge1:3478"]}`, false},
		{"not json", `<load/>`, false},
		{"too long", `{"instance":"a","version":"` + strings.Repeat("x", MaxLoadBytes) + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLoad(strings.NewReader(tc.doc))
			if tc.ok && err != nil {
				t.Fatalf("ParseLoad: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadLoad) {
				t.Fatalf("ParseLoad = %v, want ErrBadLoad", err)
			}
		})
	}
}

func TestHandlerRoundTrip(t *testing.T) {
	want := Load{Instance: "abc", Healthy: true, Allocations: 7, PortsFree: 3, PortsTotal: 10, CPU: 0.25,
		Relays: []Endpoint{{Location: "intranet", HostName: "10.0.0.1", UDPPort: 3478, TCPPort: 443}}, Alternates: []string{"[2001:db8::1]:3478"}}
	h := Handler(func() Load { return want })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/load", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /load: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	got, err := ParseLoad(rec.Body)
	if err != nil {
		t.Fatalf("ParseLoad of the served document: %v", err)
	}
	if got.Instance != want.Instance || got.Allocations != 7 || got.Score() != 0.7 || len(got.Relays) != 1 || got.Relays[0] != want.Relays[0] {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/load", io.NopCloser(strings.NewReader(""))))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /load: %d, want 405", rec.Code)
	}
}

func FuzzParseLoad(f *testing.F) {
	f.Add(`{"instance":"a1","healthy":true,"ports_free":90,"ports_total":100,"relays":[{"location":"internet","host":"h","udp_port":3478}],"alternates":["192.0.2.1:3478"]}`)
	f.Add(`{"instance":"a","cpu":1e309}`)
	f.Fuzz(func(t *testing.T, doc string) {
		l, err := ParseLoad(strings.NewReader(doc))
		if err != nil {
			return
		}
		if s := l.Score(); s < 0 || s > 1 {
			t.Fatalf("score %v of accepted document %q", s, doc)
		}
	})
}
