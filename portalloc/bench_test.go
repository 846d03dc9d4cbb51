package portalloc

import (
	"testing"
	"time"
)

func benchBind(uint16) error { return nil }

func BenchmarkAcquireRelease(b *testing.B) {
	tests := []struct {
		name string
		opts []Option
	}{
		{"quarantine", nil},
		{"no quarantine", []Option{WithQuarantine(0)}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			a := mustNew(b, 50000, 59999, tt.opts...)
			b.ReportAllocs()
			for b.Loop() {
				p, err := a.Acquire(benchBind)
				if err != nil {
					b.Fatal(err)
				}
				a.Release(p)
			}
		})
	}
}

// BenchmarkAcquireReleaseNearlyFull measures the pair when only a few ports
// of the range are free: the draw stays O(1).
func BenchmarkAcquireReleaseNearlyFull(b *testing.B) {
	a := mustNew(b, 50000, 59999, WithQuarantine(0))
	for range 10000 - 8 {
		if _, err := a.Acquire(nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.Acquire(benchBind)
		if err != nil {
			b.Fatal(err)
		}
		a.ReleaseUnused(p)
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	a := mustNew(b, 50000, 59999, WithQuarantine(time.Second))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := a.Acquire(benchBind)
			if err != nil {
				b.Error(err)
				return
			}
			a.Release(p)
		}
	})
}

func BenchmarkAcquireEvenRedeem(b *testing.B) {
	a := mustNew(b, 50000, 59999, WithQuarantine(0))
	b.ReportAllocs()
	for b.Loop() {
		p, tok, err := a.AcquireEven(benchBind)
		if err != nil {
			b.Fatal(err)
		}
		q, err := a.Redeem(tok, benchBind)
		if err != nil {
			b.Fatal(err)
		}
		a.ReleaseUnused(p)
		a.ReleaseUnused(q)
	}
}

func BenchmarkStats(b *testing.B) {
	a := mustNew(b, 50000, 59999)
	b.ReportAllocs()
	var s Stats
	for b.Loop() {
		s = a.Stats()
	}
	_ = s
}
