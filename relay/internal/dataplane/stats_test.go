//go:build linux

package dataplane

import (
	"net"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/metrics"
)

// These tests check the relay's own counters (Stats and SlowStats, the types the workers and
// the control plane count on) against the metrics exposition they end up in. They live here
// rather than in package metrics because metrics cannot import an internal package of relay.

// scrapeRig is a metrics registry whose Source sums the given counters, as Server.snapshot does.
func scrapeRig(t testing.TB, workers []*Stats, slow *SlowStats) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test", PionVersion: "test", GoVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	m.SetSource(metrics.SourceFunc(func(sn *metrics.Snapshot) {
		for _, w := range workers {
			w.AddTo(sn)
		}
		slow.AddTo(sn)
	}))
	return reg
}

// sample returns the value of the one sample of name with the given labels.
func sample(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sample %s%v", name, labels)
	return 0
}

// Packets relayed by a worker, and what the control plane counts beside it, show in the
// exposition under the direction, path and reason labels they were counted with.
func TestWorkerCountersReachTheExposition(t *testing.T) {
	const n, size = 7, 160
	r := newForwardRig(t)
	var slow SlowStats
	reg := scrapeRig(t, []*Stats{r.w.Stats()}, &slow)
	peer := r.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	data := frame(0x4001, make([]byte, size))
	for range n {
		k := r.put(0, data)
		r.w.handle(r.lis, &r.w.bufs[0], k, r.client)
		k = r.put(1, data[4:])
		r.w.handle(r.rs, &r.w.bufs[1], k, peer)
		r.w.flush()
	}
	k := r.put(0, frame(0x4002, []byte("x"))) // no such channel
	r.w.handle(r.lis, &r.w.bufs[0], k, r.client)
	slow.Count(metrics.PeerToClient, metrics.PathIndication, 100)
	slow.Drop(DropRateLimited)

	for _, dir := range []metrics.Direction{metrics.ClientToPeer, metrics.PeerToClient} {
		labels := map[string]string{"direction": dir.String(), "path": metrics.PathChannel.String()}
		if got := sample(t, reg, "avedge_relayed_packets_total", labels); got != n {
			t.Errorf("%s packets = %v, want %d", dir, got, n)
		}
		if got := sample(t, reg, "avedge_relayed_bytes_total", labels); got != n*size {
			t.Errorf("%s bytes = %v, want %d", dir, got, n*size)
		}
	}
	ind := map[string]string{"direction": metrics.PeerToClient.String(), "path": metrics.PathIndication.String()}
	if got := sample(t, reg, "avedge_relayed_bytes_total", ind); got != 100 {
		t.Errorf("indication bytes = %v, want 100", got)
	}
	for reason, want := range map[DropReason]float64{DropNoChannel: 1, DropRateLimited: 1} {
		if got := sample(t, reg, "avedge_dropped_packets_total", map[string]string{"reason": reason.String()}); got != want {
			t.Errorf("drops{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// Every drop reason is a label the metrics package exposes as itself, not as "other".
func TestDropReasonsAreMetricLabels(t *testing.T) {
	var slow SlowStats
	for r := DropReason(0); r < numDropReasons; r++ {
		slow.Drop(r)
	}
	reg := scrapeRig(t, nil, &slow)
	for r := DropReason(0); r < numDropReasons; r++ {
		if got := sample(t, reg, "avedge_dropped_packets_total", map[string]string{"reason": r.String()}); got != 1 {
			t.Errorf("drops{reason=%q} = %v, want 1", r, got)
		}
	}
	if got := sample(t, reg, "avedge_dropped_packets_total", map[string]string{"reason": metrics.LabelOther}); got != 0 {
		t.Errorf("drops{reason=other} = %v, want 0", got)
	}
}

func TestCountingAllocatesNothing(t *testing.T) {
	var s Stats
	if allocs := testing.AllocsPerRun(1000, func() { s.count(metrics.PeerToClient, metrics.PathChannel, 1200) }); allocs != 0 {
		t.Fatalf("count allocates %v times per packet, want 0", allocs)
	}
}

// TestCountersMonotonicUnderLoad scrapes while two workers count; no counter may ever read
// less than before, and the last scrape sees every packet.
func TestCountersMonotonicUnderLoad(t *testing.T) {
	const perWorker, scrapes = 20000, 30
	workers := []*Stats{new(Stats), new(Stats)}
	reg := scrapeRig(t, workers, new(SlowStats))
	var wg sync.WaitGroup
	for _, s := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				s.count(metrics.ClientToPeer, metrics.PathChannel, 100)
			}
		}()
	}
	labels := map[string]string{"direction": metrics.ClientToPeer.String(), "path": metrics.PathChannel.String()}
	var last float64
	for i := range scrapes {
		got := sample(t, reg, "avedge_relayed_bytes_total", labels)
		if got < last {
			t.Fatalf("scrape %d: bytes went back from %v to %v", i, last, got)
		}
		last = got
	}
	wg.Wait()
	if got := sample(t, reg, "avedge_relayed_packets_total", labels); got != 2*perWorker {
		t.Fatalf("packets = %v, want %d", got, 2*perWorker)
	}
}

// BenchmarkHotPathCount is what the forwarding step adds per packet for metrics.
func BenchmarkHotPathCount(b *testing.B) {
	const size = 160 // a 20 ms Opus frame with RTP header, roughly
	var s Stats
	b.ReportAllocs()
	b.SetBytes(size)
	for b.Loop() {
		s.count(metrics.ClientToPeer, metrics.PathChannel, size)
	}
}

// BenchmarkScrape is one gather of every avedge metric, the relay's counters summed from two
// workers and the control plane.
func BenchmarkScrape(b *testing.B) {
	reg := scrapeRig(b, []*Stats{new(Stats), new(Stats)}, new(SlowStats))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
