package benchstat

import (
	"errors"
	"strings"
	"testing"
)

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

func TestReadRuns(t *testing.T) {
	var got []string
	err := ReadRuns(strings.NewReader("1000\tavedge\t{}\n\n 10\tcoturn\t{\"a\":1} \n"), "N", func(k, srv string, r []byte) error {
		got = append(got, k+"/"+srv+"/"+string(r))
		return nil
	})
	if err != nil || strings.Join(got, " ") != `1000/avedge/{} 10/coturn/{"a":1}` {
		t.Fatalf("ReadRuns: %q, %v", got, err)
	}
	err = ReadRuns(strings.NewReader("1\tavedge\t{}\nbad line\n"), "N", func(string, string, []byte) error { return nil })
	if err == nil || err.Error() != "line 2: want N<TAB>server<TAB>json" {
		t.Fatalf("malformed line: %v", err)
	}
	err = ReadRuns(strings.NewReader("\n\nx\ty\tz\n"), "load", func(string, string, []byte) error { return errors.New("no") })
	if err == nil || err.Error() != "line 3: no" {
		t.Fatalf("run's error: %v", err)
	}
}
