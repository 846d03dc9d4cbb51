package pool

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/avedge/avedge/metrics"
)

// DefaultMaxAge is the shortest time a Reporter averages its rates over.
const DefaultMaxAge = time.Second

// ReporterConfig configures a Reporter. Every zero value is documented.
type ReporterConfig struct {
	// Stats returns the relay's counters (relay.Server.Stats). Required.
	Stats func() metrics.Snapshot
	// Ready is the relay's readiness (relay.Server.Ready); nil: always healthy.
	Ready func() (bool, string)
	// Version, Zone, MaxAllocations, MaxBPS, Relays and Alternates are copied into every
	// document (see Load).
	Version        string
	Zone           string
	MaxAllocations int
	MaxBPS         float64
	Relays         []Endpoint
	Alternates     []string
	// CPUTime returns the CPU time the process has used so far; nil: getrusage(RUSAGE_SELF).
	CPUTime func() time.Duration
	// Cores is what CPU time is divided by; 0: runtime.NumCPU().
	Cores int
	// MaxAge is the shortest time the rates (RelayedBPS, CPU) are averaged over; 0:
	// DefaultMaxAge; negative: every call samples them.
	MaxAge time.Duration
	// Now returns the current time; nil: time.Now.
	Now func() time.Time
}

// Reporter builds a relay's load document. Its methods are safe for concurrent use.
type Reporter struct {
	cfg      ReporterConfig // Static after construction.
	instance string         // Static after construction.

	mu      sync.Mutex
	at      time.Time     // when the rates were last sampled. Guarded by mu.
	bytes   uint64        // relayed bytes at at. Guarded by mu.
	cpu     time.Duration // CPU time at at. Guarded by mu.
	bps     float64       // the rates between the last two samples. Guarded by mu.
	cpuFrac float64       // Guarded by mu.
	sampled bool          // at least one sample taken. Guarded by mu.
}

// NewReporter checks cfg and returns a Reporter with a fresh random instance ID.
func NewReporter(cfg ReporterConfig) (*Reporter, error) {
	if cfg.Stats == nil {
		return nil, fmt.Errorf("pool: reporter without Stats: %w", ErrBadConfig)
	}
	if cfg.MaxAllocations < 0 || cfg.MaxBPS < 0 || cfg.Cores < 0 {
		return nil, fmt.Errorf("pool: reporter: negative limit: %w", ErrBadConfig)
	}
	if cfg.CPUTime == nil {
		cfg.CPUTime = processCPU
	}
	if cfg.Cores == 0 {
		cfg.Cores = runtime.NumCPU()
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read does not fail
	return &Reporter{cfg: cfg, instance: hex.EncodeToString(id[:])}, nil
}

// Instance is the ID every document of this Reporter carries.
func (r *Reporter) Instance() string { return r.instance }

// Load returns the current document. Gauges (allocations, ports, health, draining) are read
// at every call; RelayedBPS and CPU are averaged over the time between two rate samples,
// taken at most every MaxAge (both 0 until the second).
func (r *Reporter) Load() Load {
	now := r.cfg.Now()
	sn := r.cfg.Stats()
	l := Load{
		Instance: r.instance, Version: r.cfg.Version, Zone: r.cfg.Zone,
		Healthy: true, Draining: sn.Draining,
		MaxAllocations: r.cfg.MaxAllocations, MaxBPS: r.cfg.MaxBPS,
		PortsTotal: sn.Ports.Capacity,
		PortsFree:  max(0, sn.Ports.Capacity-sn.Ports.Held-sn.Ports.Reserved-sn.Ports.Quarantined),
		Relays:     r.cfg.Relays, Alternates: r.cfg.Alternates,
	}
	for _, byFamily := range sn.Allocations {
		for _, n := range byFamily {
			l.Allocations += n
		}
	}
	if r.cfg.Ready != nil {
		l.Healthy, _ = r.cfg.Ready()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.sampled || r.cfg.MaxAge <= 0 || now.Sub(r.at) >= r.cfg.MaxAge {
		var bytes uint64
		for _, byPath := range sn.Traffic {
			for _, c := range byPath {
				bytes += c.Bytes
			}
		}
		cpu := r.cfg.CPUTime()
		if dt := now.Sub(r.at).Seconds(); r.sampled && dt > 0 {
			r.bps, r.cpuFrac = 0, 0
			if bytes >= r.bytes {
				r.bps = float64(bytes-r.bytes) * 8 / dt
			}
			if cpu >= r.cpu {
				r.cpuFrac = clamp01((cpu - r.cpu).Seconds() / dt / float64(r.cfg.Cores))
			}
		}
		r.at, r.bytes, r.cpu, r.sampled = now, bytes, cpu, true
	}
	l.RelayedBPS, l.CPU = r.bps, r.cpuFrac
	return l
}

// processCPU is the user and system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
