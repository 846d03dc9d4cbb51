package policy

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

const second = int64(1e9)

func TestLimiter(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.1")
	tests := []struct {
		name  string
		rate  float64
		burst int
		steps []struct {
			now  int64
			want []bool
		}
	}{
		{"burst then refuse", 1, 3, []struct {
			now  int64
			want []bool
		}{{0, []bool{true, true, true, false, false}}}},
		{"refill one per second", 1, 2, []struct {
			now  int64
			want []bool
		}{
			{0, []bool{true, true, false}},
			{second / 2, []bool{false}},
			{second, []bool{true, false}},
			{3 * second, []bool{true, true, false}},
		}},
		{"refill capped at burst", 10, 2, []struct {
			now  int64
			want []bool
		}{
			{0, []bool{true, true, false}},
			{100 * second, []bool{true, true, false}},
		}},
		{"fractional rate", 2, 1, []struct {
			now  int64
			want []bool
		}{
			{0, []bool{true, false}},
			{second/2 - 1, []bool{false}},
			{second / 2, []bool{true, false}},
		}},
		{"time backwards refills nothing", 1, 1, []struct {
			now  int64
			want []bool
		}{
			{10 * second, []bool{true, false}},
			{5 * second, []bool{false}},
			{10*second + second/2, []bool{false}},
			{11 * second, []bool{true}},
		}},
		{"disabled by zero rate", 0, 1, []struct {
			now  int64
			want []bool
		}{{0, []bool{true, true, true, true}}}},
		{"burst below one is one", 1, 0, []struct {
			now  int64
			want []bool
		}{{0, []bool{true, false}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(tt.rate, tt.burst, 8)
			for si, s := range tt.steps {
				for ci, want := range s.want {
					if got := l.Allow(a, s.now); got != want {
						t.Fatalf("step %d call %d at %d: got %v, want %v", si, ci, s.now, got, want)
					}
				}
			}
		})
	}
}

func TestLimiterKeys(t *testing.T) {
	tests := []struct {
		name   string
		first  string
		second string
		shared bool
	}{
		{"different v4", "198.51.100.1", "198.51.100.2", false},
		{"mapped is v4", "198.51.100.1", "::ffff:198.51.100.1", true},
		{"same v6 /64", "2001:db8::1", "2001:db8::ffff:2", true},
		{"different v6 /64", "2001:db8::1", "2001:db8:0:1::1", false},
		{"zone ignored", "fe80::1%eth0", "fe80::1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(1, 1, 8)
			if !l.Allow(netip.MustParseAddr(tt.first), 0) {
				t.Fatal("first call refused")
			}
			got := !l.Allow(netip.MustParseAddr(tt.second), 0)
			if got != tt.shared {
				t.Errorf("shared bucket = %v, want %v", got, tt.shared)
			}
		})
	}
}

func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
}

func TestLimiterEvictionBound(t *testing.T) {
	l := NewLimiter(1, 1, 4)
	for i := range 1000 {
		l.Allow(addrN(i), 0)
		if n := l.Len(); n > 4 {
			t.Fatalf("after %d keys Len() = %d, want <= 4", i+1, n)
		}
	}
	if n := l.Len(); n != 4 {
		t.Errorf("Len() = %d, want 4", n)
	}
}

func TestLimiterEvictsLeastRecentlyUsed(t *testing.T) {
	l := NewLimiter(1e-9, 1, 4) // effectively no refill
	a, b, c, d, e := addrN(1), addrN(2), addrN(3), addrN(4), addrN(5)
	for _, k := range []netip.Addr{a, b, c, d} {
		if !l.Allow(k, 0) {
			t.Fatalf("first call for %s refused", k)
		}
	}
	if l.Allow(a, 0) { // touches a: b is now least recently used
		t.Fatal("a not exhausted")
	}
	if !l.Allow(e, 0) { // evicts b
		t.Fatal("new key e refused")
	}
	if l.Allow(a, 0) {
		t.Error("a was evicted, want b evicted")
	}
	if !l.Allow(b, 0) { // b forgotten: fresh burst (evicts c)
		t.Error("b still remembered, want it evicted")
	}
	if l.Allow(d, 0) {
		t.Error("d was evicted, want c evicted")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	const burst = 50
	l := NewLimiter(1, burst, 16)
	shared := netip.MustParseAddr("203.0.113.9")
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if l.Allow(shared, 0) {
					allowed.Add(1)
				}
				l.Allow(addrN(g*200+i), int64(i)) // churn evictions meanwhile
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != burst {
		t.Errorf("allowed %d at a fixed instant, want exactly the burst %d", got, burst)
	}
	if n := l.Len(); n > 16 {
		t.Errorf("Len() = %d, want <= 16", n)
	}
}

func TestLimiterAllocs(t *testing.T) {
	l := NewLimiter(100, 10, 64)
	keys := make([]netip.Addr, 256)
	for i := range keys {
		keys[i] = addrN(i)
	}
	for _, k := range keys { // fill every slot once
		l.Allow(k, 0)
	}
	var now int64
	allocs := testing.AllocsPerRun(50, func() {
		for _, k := range keys { // 256 keys through 64 slots: every call evicts
			now += 1000
			l.Allow(k, now)
		}
	})
	if allocs != 0 {
		t.Errorf("Allow allocates %.1f times per run in steady state, want 0", allocs)
	}
}
