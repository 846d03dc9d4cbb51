package pool

import (
	"testing"
	"time"

	"github.com/avedge/avedge/metrics"
)

func TestReporterRates(t *testing.T) {
	now := time.Unix(1000, 0)
	var bytes uint64
	var cpu time.Duration
	draining := false
	r, err := NewReporter(ReporterConfig{
		Stats: func() metrics.Snapshot {
			var sn metrics.Snapshot
			sn.Allocations[0][0], sn.Allocations[1][1] = 2, 3
			sn.Ports = metrics.PortStats{Capacity: 100, Held: 5, Reserved: 1, Quarantined: 4}
			sn.Traffic[0][0].Bytes, sn.Traffic[1][1].Bytes = bytes/2, bytes-bytes/2
			sn.Draining = draining
			return sn
		},
		CPUTime: func() time.Duration { return cpu },
		Cores:   2,
		MaxAge:  time.Second,
		Zone:    "eu-west-1a",
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	l := r.Load()
	if l.Allocations != 5 || l.PortsFree != 90 || l.PortsTotal != 100 || l.RelayedBPS != 0 || l.CPU != 0 || !l.Healthy || l.Zone != "eu-west-1a" || l.Instance != r.Instance() {
		t.Fatalf("first sample %+v", l)
	}
	bytes, cpu = 1000, 500*time.Millisecond
	now = now.Add(500 * time.Millisecond)
	draining = true
	if l2 := r.Load(); l2.RelayedBPS != 0 || !l2.Draining {
		t.Fatalf("within MaxAge: rates %v, draining %v; want the rates kept (0) and the drain seen at once", l2.RelayedBPS, l2.Draining)
	}
	now = now.Add(500 * time.Millisecond)
	l = r.Load()
	if l.RelayedBPS != 8000 || l.CPU != 0.25 || !l.Draining {
		t.Fatalf("after 1 s, 1000 bytes and 0.5 s CPU on 2 cores: bps %v cpu %v draining %v; want 8000, 0.25, true", l.RelayedBPS, l.CPU, l.Draining)
	}
	if l.Score() != 1 {
		t.Fatalf("draining relay scores %v, want 1", l.Score())
	}
}
