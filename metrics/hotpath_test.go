package metrics

import (
	"sync"
	"sync/atomic"
	"testing"
)

// This file shows the counting the relay's data path is expected to do, on a
// tiny stand-in for its allocation type: the forwarding step adds to atomics
// on the allocation it already holds (no lock, no map, no Prometheus), and a
// Source sums live allocations plus the totals of ended ones at scrape time.

// exampleAllocation is the relay's per-allocation state, reduced to counting.
type exampleAllocation struct {
	transport Transport // Static after construction.
	family    Family    // Static after construction.

	// Written by the data path with atomic adds, read by Snapshot.
	packets [NumDirections][NumPaths]atomic.Uint64
	bytes   [NumDirections][NumPaths]atomic.Uint64
}

// count is all the forwarding step does for metrics: two atomic adds
// (atomic.Uint64.Add is atomic.AddUint64 on an aligned struct field).
func (a *exampleAllocation) count(d Direction, p Path, n int) {
	a.packets[d][p].Add(1)
	a.bytes[d][p].Add(uint64(n))
}

// exampleRelay is the relay's allocation table, reduced to counting.
type exampleRelay struct {
	mu    sync.Mutex                       // control plane only; never taken per packet
	live  map[*exampleAllocation]struct{}  // Guarded by mu.
	ended [NumDirections][NumPaths]Counter // Guarded by mu. Totals of ended allocations.
}

func newExampleRelay() *exampleRelay {
	return &exampleRelay{live: make(map[*exampleAllocation]struct{})}
}

func (r *exampleRelay) allocate(t Transport, f Family) *exampleAllocation {
	a := &exampleAllocation{transport: t, family: f}
	r.mu.Lock()
	r.live[a] = struct{}{}
	r.mu.Unlock()
	return a
}

// end folds a's totals into ended so that counters never go backwards.
func (r *exampleRelay) end(a *exampleAllocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.live, a)
	for d := range NumDirections {
		for p := range NumPaths {
			r.ended[d][p].Packets += a.packets[d][p].Load()
			r.ended[d][p].Bytes += a.bytes[d][p].Load()
		}
	}
}

// Snapshot implements Source.
func (r *exampleRelay) Snapshot(s *Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Traffic = r.ended
	for a := range r.live {
		s.Allocations[a.transport][a.family]++
		for d := range NumDirections {
			for p := range NumPaths {
				s.Traffic[d][p].Packets += a.packets[d][p].Load()
				s.Traffic[d][p].Bytes += a.bytes[d][p].Load()
			}
		}
	}
}

// TestLiveCountersWhileAllocationOpen is the end-to-end figure on the
// stand-in: N packets of S bytes each way show while the allocation is open,
// and after it ends the gauge is back to 0 with the counters unchanged.
func TestLiveCountersWhileAllocationOpen(t *testing.T) {
	const n, size = 7, 160
	m, reg := newTestMetrics(t, fixedOptions)
	r := newExampleRelay()
	m.SetSource(r)

	a := r.allocate(TransportUDP, FamilyIPv6)
	for range n {
		a.count(ClientToPeer, PathChannel, size)
		a.count(PeerToClient, PathChannel, size)
	}

	type want struct{ active, packets, bytes float64 }
	check := func(t *testing.T, w want) {
		t.Helper()
		if got := sample(t, reg, "avedge_allocations_active", map[string]string{"transport": "udp", "family": "ipv6"}); got != w.active {
			t.Errorf("allocations active = %v, want %v", got, w.active)
		}
		for _, dir := range []string{"client_to_peer", "peer_to_client"} {
			labels := map[string]string{"direction": dir, "path": "channel"}
			if got := sample(t, reg, "avedge_relayed_packets_total", labels); got != w.packets {
				t.Errorf("%s packets = %v, want %v", dir, got, w.packets)
			}
			if got := sample(t, reg, "avedge_relayed_bytes_total", labels); got != w.bytes {
				t.Errorf("%s bytes = %v, want %v", dir, got, w.bytes)
			}
		}
	}
	t.Run("while open", func(t *testing.T) { check(t, want{1, n, n * size}) })
	r.end(a)
	t.Run("after end", func(t *testing.T) { check(t, want{0, n, n * size}) })
}

// TestCountingTakesNoLock holds the lock that scrapes and the control plane
// take while the data path counts: counting that took it would never return.
func TestCountingTakesNoLock(t *testing.T) {
	r := newExampleRelay()
	a := r.allocate(TransportTCP, FamilyIPv4)
	r.mu.Lock()
	a.count(ClientToPeer, PathIndication, 100)
	r.mu.Unlock()
	if got := a.bytes[ClientToPeer][PathIndication].Load(); got != 100 {
		t.Fatalf("bytes = %d, want 100", got)
	}
}

func TestCountingAllocatesNothing(t *testing.T) {
	a := newExampleRelay().allocate(TransportUDP, FamilyIPv4)
	if allocs := testing.AllocsPerRun(1000, func() { a.count(PeerToClient, PathChannel, 1200) }); allocs != 0 {
		t.Fatalf("count allocates %v times per packet, want 0", allocs)
	}
}

// TestCountersMonotonicUnderLoad scrapes while the data path counts and
// allocations come and go; no counter may ever read less than before.
func TestCountersMonotonicUnderLoad(t *testing.T) {
	const workers, allocsPerWorker, packetsPerAlloc, scrapes = 2, 20, 200, 30
	m, reg := newTestMetrics(t, fixedOptions)
	r := newExampleRelay()
	m.SetSource(r)

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range allocsPerWorker {
				a := r.allocate(TransportUDP, FamilyIPv4)
				for range packetsPerAlloc {
					a.count(ClientToPeer, PathChannel, 100)
				}
				r.end(a)
			}
		}()
	}
	labels := map[string]string{"direction": "client_to_peer", "path": "channel"}
	var last float64
	for i := range scrapes {
		got := sample(t, reg, "avedge_relayed_bytes_total", labels)
		if got < last {
			t.Fatalf("scrape %d: bytes went back from %v to %v", i, last, got)
		}
		last = got
	}
	wg.Wait()
	const total = workers * allocsPerWorker * packetsPerAlloc
	if got := sample(t, reg, "avedge_relayed_packets_total", labels); got != total {
		t.Fatalf("packets = %v, want %v", got, float64(total))
	}
}

// BenchmarkHotPathCount measures what the forwarding step adds per packet.
func BenchmarkHotPathCount(b *testing.B) {
	const size = 160 // a 20 ms Opus frame with RTP header, roughly
	b.Run("serial", func(b *testing.B) {
		a := newExampleRelay().allocate(TransportUDP, FamilyIPv4)
		b.ReportAllocs()
		b.SetBytes(size)
		for b.Loop() {
			a.count(ClientToPeer, PathChannel, size)
		}
	})
	b.Run("parallel_own_allocation", func(b *testing.B) {
		r := newExampleRelay()
		b.ReportAllocs()
		b.SetBytes(size)
		b.RunParallel(func(pb *testing.PB) {
			a := r.allocate(TransportUDP, FamilyIPv4)
			for pb.Next() {
				a.count(ClientToPeer, PathChannel, size)
			}
		})
	})
}

// BenchmarkScrape measures one gather of every avedge metric with a Source
// that holds 1000 live allocations.
func BenchmarkScrape(b *testing.B) {
	m, reg := newTestMetrics(b, fixedOptions)
	r := newExampleRelay()
	for range 1000 {
		r.allocate(TransportUDP, FamilyIPv4).count(PeerToClient, PathChannel, 160)
	}
	m.SetSource(r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
