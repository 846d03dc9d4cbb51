package benchstat

import "testing"

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"empty", nil, 0},
		{"one", []float64{3}, 3},
		{"odd", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 2, 3}, 2.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			if got := Median(in); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatalf("Median reordered its argument: %v", in)
				}
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		name string
		a, b []float64
		want string
	}{
		{"rounds paired", []float64{30, 34}, []float64{20, 20}, "1.60× (1.50–1.70)"},
		{"range is per round, not of the medians", []float64{10, 40, 20}, []float64{10, 10, 40}, "2.00× (0.50–4.00)"},
		{"one round", []float64{30}, []float64{20}, "1.50×"},
		{"unequal rounds", []float64{30, 30, 30}, []float64{20, 20}, "1.50×"},
		{"a round of b without a result", []float64{30, 30, 30}, []float64{20, 0, 20}, "1.50×"},
		{"no b", []float64{30}, nil, "-"},
		{"zero median", []float64{0, 0}, []float64{1, 1}, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Ratio(tt.a, tt.b); got != tt.want {
				t.Errorf("Ratio(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
