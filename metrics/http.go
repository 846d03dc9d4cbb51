package metrics

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxScrapesInFlight bounds concurrent /metrics requests; more are answered
// 503 rather than queued behind a slow gather.
const maxScrapesInFlight = 8

// Handler serves, for GET and HEAD:
//
//   - /metrics: the exposition of g (promhttp, content-negotiated);
//   - /healthz: 200 "ok" while the process lives;
//   - /readyz: 200 "ok" when ready reports true, else 503 with ready's
//     reason. A nil ready is always ready.
//
// Other paths get 404 and other methods 405. Mount it on a listener of its
// own (loopback by default); it carries no authentication.
func Handler(g prometheus.Gatherer, ready func() (bool, string)) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		MaxRequestsInFlight: maxScrapesInFlight,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready == nil {
			writeText(w, http.StatusOK, "ok")
			return
		}
		ok, reason := ready()
		if ok {
			writeText(w, http.StatusOK, "ok")
			return
		}
		if reason == "" {
			reason = "not ready"
		}
		writeText(w, http.StatusServiceUnavailable, reason)
	})
	return mux
}

// writeText answers a probe with a short plain-text body that no cache keeps.
func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body+"\n")
}
