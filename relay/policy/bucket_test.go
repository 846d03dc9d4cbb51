package policy

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestBucket(t *testing.T) {
	type take struct {
		now  int64
		n    int
		want bool
	}
	tests := []struct {
		name        string
		rate, burst int64
		takes       []take
	}{
		{"burst then refuse", 1000, 1500, []take{
			{0, 1000, true}, {0, 500, true}, {0, 1, false},
		}},
		{"refill at rate", 1000, 1500, []take{
			{0, 1500, true}, {0, 1, false},
			{second / 1000, 1, true}, {second / 1000, 1, false},
			{second, 999, true}, {second, 1, false},
		}},
		{"refill capped at burst", 1000, 1500, []take{
			{0, 1500, true}, {100 * second, 1500, true}, {100 * second, 1, false},
		}},
		{"larger than burst never passes", 1000, 1500, []take{
			{0, 1501, false}, {100 * second, 1501, false}, {100 * second, 1500, true},
		}},
		{"refused take accounts nothing", 1000, 1000, []take{
			{0, 600, true}, {0, 600, false}, {0, 400, true}, {0, 1, false},
		}},
		{"non-positive n passes", 1000, 1000, []take{
			{0, 1000, true}, {0, 0, true}, {0, -5, true}, {0, 1, false},
		}},
		{"default burst is one second", 1000, 0, []take{
			{0, 1000, true}, {0, 1, false},
		}},
		{"no rounding accumulates", 3, 3, []take{
			{0, 1, true}, {0, 1, true}, {0, 1, true}, {0, 1, false},
			{333_333_333, 1, false}, {333_333_334, 1, true},
		}},
		{"unlimited when rate is zero", 0, 10, []take{
			{0, 1 << 30, true}, {0, 1 << 30, true},
		}},
		{"unlimited when rate is negative", -1, 10, []take{{0, 1 << 30, true}}},
		{"time backwards refills nothing", 1000, 1000, []take{
			{10 * second, 1000, true}, {5 * second, 1, false}, {11 * second, 1000, true},
		}},
		{"origin is the first take", 1000, 1000, []take{
			{1_700_000_000 * second, 1000, true}, {1_700_000_000 * second, 1, false},
			{1_700_000_001 * second, 1000, true},
		}},
		{"third of a byte per nanosecond stays exact", 3_000_000_000, 3000, []take{
			{0, 1000, true}, {0, 1000, true}, {0, 1000, true}, {0, 1, false},
			{333, 999, true}, {333, 1, false}, {334, 1, true},
		}},
		{"huge rate", 1 << 40, 1 << 20, []take{
			{0, 1 << 20, true}, {0, 1500, false}, {second / 1000, 1 << 20, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBucket(tt.rate, tt.burst)
			for i, tk := range tt.takes {
				if got := b.Take(tk.n, tk.now); got != tk.want {
					t.Fatalf("take %d (%d bytes at %d): got %v, want %v", i, tk.n, tk.now, got, tk.want)
				}
			}
		})
	}
}

func TestBucketZeroValueUnlimited(t *testing.T) {
	var b Bucket
	for i := range 10 {
		if !b.Take(1<<20, int64(i)) {
			t.Fatal("zero Bucket refused")
		}
	}
}

func TestBucketSetRate(t *testing.T) {
	b := NewBucket(0, 0)
	if r, bu := b.Rate(); r != 0 || bu != 0 {
		t.Fatalf("Rate() = %d, %d; want 0, 0", r, bu)
	}
	b.SetRate(1000, 100)
	if r, bu := b.Rate(); r != 1000 || bu != 100 {
		t.Fatalf("Rate() = %d, %d; want 1000, 100", r, bu)
	}
	if !b.Take(100, 0) || b.Take(1, 0) {
		t.Fatal("limit not applied after SetRate")
	}
	b.SetRate(0, 0)
	if !b.Take(1<<20, 0) {
		t.Fatal("still limited after SetRate(0, 0)")
	}
	b.SetRate(1000, 1000) // restarts full
	if !b.Take(1000, 0) || b.Take(1, 0) {
		t.Fatal("SetRate did not restart with a full burst")
	}
}

// TestBucketSustainedRate drives the bucket with simulated time: over ten
// seconds it passes burst + rate*10s bytes, within one packet.
func TestBucketSustainedRate(t *testing.T) {
	const rate, burst, pkt = 125_000, 10_000, 100
	b := NewBucket(rate, burst)
	var passed int64
	for step := range 10_000 { // 1 ms steps
		now := int64(step) * second / 1000
		for range 10 { // offer 1 MB/s, eight times the rate
			if b.Take(pkt, now) {
				passed += pkt
			}
		}
	}
	want := int64(burst) + rate*10 - rate/1000 // last step is at 9.999 s
	if passed < want-pkt || passed > want+pkt {
		t.Errorf("passed %d bytes, want %d ± %d", passed, want, pkt)
	}
}

func TestBucketConcurrent(t *testing.T) {
	b := NewBucket(1000, 10_000)
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				if b.Take(10, 0) {
					passed.Add(10)
				}
			}
		})
	}
	wg.Wait()
	if got := passed.Load(); got != 10_000 {
		t.Errorf("passed %d bytes at a fixed instant, want exactly the burst 10000", got)
	}
}

func TestBucketConcurrentSetRate(t *testing.T) {
	b := NewBucket(1000, 1000)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			b.SetRate(int64(i%3)*1000, 1000)
		}
	})
	for range 4 {
		wg.Go(func() {
			for i := range 1000 {
				b.Take(10, int64(i)*1000)
			}
		})
	}
	wg.Wait()
}

func TestBucketTakeAllocs(t *testing.T) {
	b := NewBucket(1<<30, 1<<20)
	var now int64
	allocs := testing.AllocsPerRun(1000, func() {
		now += 1000
		b.Take(1200, now)
	})
	if allocs != 0 {
		t.Errorf("Take allocates %.1f times per call, want 0", allocs)
	}
}

func TestByteClock(t *testing.T) {
	tests := []struct {
		name    string
		elapsed uint64
		rate    uint64
		want    int64
	}{
		{"one second", 1e9, 1000, 1000},
		{"floor", 333_333_333, 3, 0},
		{"exact third", 333_333_334, 3, 1},
		{"128-bit product", 1 << 62, 1 << 20, 4_835_703_278_458_516}, // floor(2^82 / 1e9)
		{"quotient beyond 64 bits", 1 << 63, 1 << 40, maxClock},
		{"quotient above cap", 1 << 62, 1e9, maxClock},
		{"just below cap", maxClock, 1e9, maxClock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := byteClock(tt.elapsed, tt.rate); got != tt.want {
				t.Errorf("byteClock(%d, %d) = %d, want %d", tt.elapsed, tt.rate, got, tt.want)
			}
		})
	}
}
