package pool

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strings"
)

// MaxLoadBytes bounds a load document read from a member; a longer answer is refused.
const MaxLoadBytes = 64 << 10

// maxEndpoints bounds the Relays and Alternates a document may carry.
const maxEndpoints = 64

// Endpoint is one address clients reach a relay on, as the credential service lists it
// (auth.RelayInfo in JSON).
type Endpoint struct {
	Location string `json:"location"` // "internet" or "intranet"
	HostName string `json:"host"`
	UDPPort  int    `json:"udp_port,omitempty"`
	TCPPort  int    `json:"tcp_port,omitempty"`
}

// Load is a relay's load document, served at GET /load beside /metrics. Gauges are current;
// RelayedBPS and CPU are averaged since the previous sample (at most every
// ReporterConfig.MaxAge).
type Load struct {
	// Instance is random per process: a relay recognises its own document among its
	// peers' (it never names itself in ALTERNATE-SERVER).
	Instance string `json:"instance"`
	Version  string `json:"version"`
	// Zone is the operator's region or zone label ("" when none).
	Zone string `json:"zone,omitempty"`
	// Healthy is the relay's readiness (/readyz); Draining, that it refuses new allocations
	// while live ones finish.
	Healthy  bool `json:"healthy"`
	Draining bool `json:"draining"`
	// Allocations live, and the relay's cap on them (0: none).
	Allocations    int `json:"allocations"`
	MaxAllocations int `json:"max_allocations,omitempty"`
	// PortsFree and PortsTotal describe the edge range.
	PortsFree  int `json:"ports_free"`
	PortsTotal int `json:"ports_total"`
	// RelayedBPS is the bits per second relayed (both directions, application data), and
	// MaxBPS the capacity the operator declared for it (0: not counted in the score).
	RelayedBPS float64 `json:"relayed_bps"`
	MaxBPS     float64 `json:"max_bps,omitempty"`
	// CPU is the busy fraction of the machine's cores taken by the relay process, 0 to 1.
	CPU float64 `json:"cpu"`
	// Relays are the addresses the credential service lists for this relay.
	Relays []Endpoint `json:"relays,omitempty"`
	// Alternates are the UDP ip:port another relay names in ALTERNATE-SERVER to send a
	// client here, at most one per address family.
	Alternates []string `json:"alternates,omitempty"`
}

// Score is how loaded the relay is, from 0 (idle) to 1 (full): the utilisation of the
// resource it will run out of first,
//
//	max( (PortsTotal-PortsFree)/PortsTotal,   relay ports of the edge range in use
//	     Allocations/MaxAllocations,          when the relay has a cap
//	     RelayedBPS/MaxBPS,                   when the operator declared a capacity
//	     CPU )                                busy fraction of the machine
//
// A maximum rather than a weighted sum: a relay out of ports (or of CPU) cannot take a call
// however idle its other resources are, and a sum would hide that. Each term is clamped to
// [0, 1]; a relay that is not healthy or drains scores 1.
func (l Load) Score() float64 {
	if !l.Healthy || l.Draining {
		return 1
	}
	s := clamp01(l.CPU)
	if l.PortsTotal > 0 {
		s = max(s, clamp01(float64(l.PortsTotal-l.PortsFree)/float64(l.PortsTotal)))
	}
	if l.MaxAllocations > 0 {
		s = max(s, clamp01(float64(l.Allocations)/float64(l.MaxAllocations)))
	}
	if l.MaxBPS > 0 {
		s = max(s, clamp01(l.RelayedBPS/l.MaxBPS))
	}
	return s
}

func clamp01(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return min(v, 1)
}

// check refuses a document whose values are out of range.
func (l *Load) check() error {
	switch {
	case l.Instance == "" || len(l.Instance) > 64:
		return fmt.Errorf("instance of %d bytes: %w", len(l.Instance), ErrBadLoad)
	case len(l.Zone) > 63 || len(l.Version) > 64:
		return fmt.Errorf("zone or version too long: %w", ErrBadLoad)
	case l.Allocations < 0 || l.MaxAllocations < 0 || l.PortsFree < 0 || l.PortsTotal < 0 || l.PortsFree > l.PortsTotal:
		return fmt.Errorf("allocations %d/%d ports %d/%d: %w", l.Allocations, l.MaxAllocations, l.PortsFree, l.PortsTotal, ErrBadLoad)
	case !finite(l.RelayedBPS) || !finite(l.MaxBPS) || !finite(l.CPU) || l.RelayedBPS < 0 || l.MaxBPS < 0 || l.CPU < 0:
		return fmt.Errorf("bps %v/%v cpu %v: %w", l.RelayedBPS, l.MaxBPS, l.CPU, ErrBadLoad)
	case len(l.Relays) > maxEndpoints || len(l.Alternates) > maxEndpoints:
		return fmt.Errorf("%d relays, %d alternates: %w", len(l.Relays), len(l.Alternates), ErrBadLoad)
	}
	for _, e := range l.Relays {
		if e.Location != "internet" && e.Location != "intranet" || e.HostName == "" || strings.ContainsAny(e.HostName, " \t\r\n/?#@") ||
			e.UDPPort < 0 || e.UDPPort > 65535 || e.TCPPort < 0 || e.TCPPort > 65535 || e.UDPPort == 0 && e.TCPPort == 0 {
			return fmt.Errorf("relay %+v: %w", e, ErrBadLoad)
		}
	}
	for _, a := range l.Alternates {
		if ap, err := netip.ParseAddrPort(a); err != nil || ap.Port() == 0 {
			return fmt.Errorf("alternate %q: %w", a, ErrBadLoad)
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// ParseLoad reads a load document (at most MaxLoadBytes) and checks its values.
func ParseLoad(r io.Reader) (Load, error) {
	var l Load
	dec := json.NewDecoder(io.LimitReader(r, MaxLoadBytes+1))
	if err := dec.Decode(&l); err != nil {
		return Load{}, fmt.Errorf("pool: load document: %w: %w", ErrBadLoad, err)
	}
	if dec.InputOffset() > MaxLoadBytes {
		return Load{}, fmt.Errorf("pool: load document over %d bytes: %w", MaxLoadBytes, ErrBadLoad)
	}
	if err := l.check(); err != nil {
		return Load{}, fmt.Errorf("pool: load document: %w", err)
	}
	return l, nil
}

// Handler serves GET /load: the document load returns, as JSON, 200 whether or not the
// relay is healthy (the document says so; a relay that does not answer is what a poller
// counts as a failure).
func Handler(load func() Load) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		l := load()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(&l) // the poller went away; nothing to do
	})
}
