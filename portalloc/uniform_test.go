package portalloc

import (
	"math"
	"math/rand/v2"
	"testing"
)

// chiSquare returns Pearson's statistic for counts against a uniform
// expectation over len(counts) cells.
func chiSquare(counts []int) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	exp := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}

// chiSquareCritical returns the value a chi-square statistic with df degrees
// of freedom exceeds with probability 0.001 (Wilson–Hilferty approximation;
// within 0.5% of the tables for df >= 10).
func chiSquareCritical(df int) float64 {
	const z = 3.090 // upper 0.001 quantile of the standard normal
	k := float64(df)
	h := 2 / (9 * k)
	return k * math.Pow(1-h+z*math.Sqrt(h), 3)
}

func TestChiSquareCritical(t *testing.T) {
	tests := []struct {
		df   int
		want float64 // from the tables
	}{{15, 37.697}, {19, 43.820}, {31, 61.098}, {99, 148.230}}
	for _, tt := range tests {
		if got := chiSquareCritical(tt.df); math.Abs(got-tt.want)/tt.want > 0.005 {
			t.Errorf("chiSquareCritical(%d) = %.3f, want %.3f", tt.df, got, tt.want)
		}
	}
}

// drawCounts draws `draws` ports with draw and counts them per port of
// [min, min+n).
func drawCounts(t *testing.T, min uint16, n, draws int, draw func() uint16) []int {
	t.Helper()
	counts := make([]int, n)
	for range draws {
		p := draw()
		if p < min || int(p-min) >= n {
			t.Fatalf("draw %d outside range", p)
		}
		counts[p-min]++
	}
	return counts
}

// freeCounts keeps only the counts of ports not in held.
func freeCounts(counts []int, held map[int]bool) []int {
	var out []int
	for i, c := range counts {
		if !held[i] {
			out = append(out, c)
		} else if c != 0 {
			panic("a held port was drawn")
		}
	}
	return out
}

func TestDrawUniform(t *testing.T) {
	const min, perPort = 20000, 600
	tests := []struct {
		name string
		n    int
		held map[int]bool // offsets held before drawing
	}{
		{name: "whole range of 16", n: 16},
		{name: "32 ports with a held block", n: 32, held: heldRun(0, 12)},
		{name: "40 ports with scattered holds", n: 40, held: map[int]bool{1: true, 2: true, 7: true, 19: true, 20: true, 21: true, 33: true, 39: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustNew(t, min, min+uint16(tt.n-1), WithSeed(20261130))
			for off := range tt.held {
				if err := a.AcquirePort(min+uint16(off), nil); err != nil {
					t.Fatal(err)
				}
			}
			free := tt.n - len(tt.held)
			counts := drawCounts(t, min, tt.n, free*perPort, func() uint16 {
				p, err := a.Acquire(nil)
				if err != nil {
					t.Fatal(err)
				}
				a.ReleaseUnused(p)
				return p
			})
			fc := freeCounts(counts, tt.held)
			for i, c := range fc {
				if c == 0 {
					t.Fatalf("free port #%d never drawn", i)
				}
			}
			x, crit := chiSquare(fc), chiSquareCritical(len(fc)-1)
			t.Logf("chi-square %.1f, critical %.1f (df %d)", x, crit, len(fc)-1)
			if x > crit {
				t.Fatalf("draw not uniform: chi-square %.1f > %.1f", x, crit)
			}
			mustCheck(t, a)
		})
	}
}

func TestEvenDrawUniform(t *testing.T) {
	const min, n, perPair = 20000, 40, 600
	a := mustNew(t, min, min+n-1, WithSeed(99))
	counts := drawCounts(t, min, n, n/2*perPair, func() uint16 {
		p, tok, err := a.AcquireEven(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Redeem(tok, nil); err != nil {
			t.Fatal(err)
		}
		a.ReleaseUnused(p)
		a.ReleaseUnused(p + 1)
		return p
	})
	var even []int
	for i := 0; i < n; i += 2 {
		if counts[i+1] != 0 {
			t.Fatalf("odd port %d drawn as pair base", min+i+1)
		}
		even = append(even, counts[i])
	}
	if x, crit := chiSquare(even), chiSquareCritical(len(even)-1); x > crit {
		t.Fatalf("pair draw not uniform: chi-square %.1f > %.1f", x, crit)
	}
}

func heldRun(from, to int) map[int]bool {
	m := map[int]bool{}
	for i := from; i < to; i++ {
		m[i] = true
	}
	return m
}

// TestChiSquareCatchesBias shows that the uniformity check above has teeth:
// the same statistic and threshold reject two biased draws.
func TestChiSquareCatchesBias(t *testing.T) {
	const lo, n, perPort = 20000, 32, 600
	held := heldRun(0, 12)
	free := n - len(held)
	tests := []struct {
		name string
		draw func(r *rand.Rand) uint16
	}{
		{
			// The common "random start, then first free port" scan: the
			// port after a held block is drawn far more often.
			name: "random start then first free",
			draw: func(r *rand.Rand) uint16 {
				start := r.IntN(n)
				for k := range n {
					if off := (start + k) % n; !held[off] {
						return lo + uint16(off)
					}
				}
				panic("no free port")
			},
		},
		{
			// A mild bias: one port of twenty gets 30% more weight.
			name: "one port favoured by 30%",
			draw: func(r *rand.Rand) uint16 {
				x := r.Float64() * (float64(free) + 0.3)
				k := min(int(x), free-1) // the last cell spans 1.3
				return lo + uint16(len(held)+k)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(20261130, 1))
			fc := freeCounts(drawCounts(t, lo, n, free*perPort, func() uint16 { return tt.draw(r) }), held)
			x, crit := chiSquare(fc), chiSquareCritical(len(fc)-1)
			t.Logf("chi-square %.1f, critical %.1f", x, crit)
			if x <= crit {
				t.Fatalf("biased draw passed the test: chi-square %.1f <= %.1f", x, crit)
			}
		})
	}
}
