// Package benchstat holds the statistics the benchmark tables share: the median of a
// server's rounds and the ratio of two servers' medians with the range of the per-round
// ratios.
package benchstat

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Median of v; the mean of the middle two for an even count; 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Ratio formats the ratio of the medians of a and b ("1.60×") and, when both servers ran
// every round, the range of the per-round ratios ("1.60× (1.50–1.70)"): rounds alternate the
// servers, so round i of one is run beside round i of the other, and on a noisy machine the
// spread says how far to trust the median. "-" when either median is not positive.
func Ratio(a, b []float64) string {
	x, y := Median(a), Median(b)
	if x <= 0 || y <= 0 {
		return "-"
	}
	s := fmt.Sprintf("%.2f×", x/y)
	if len(a) < 2 || len(a) != len(b) {
		return s
	}
	lo, hi := 0.0, 0.0
	for i := range a {
		if b[i] <= 0 {
			return s
		}
		r := a[i] / b[i]
		if i == 0 || r < lo {
			lo = r
		}
		if i == 0 || r > hi {
			hi = r
		}
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", s, lo, hi)
}

// ReadRuns reads the runs a benchmark script collected: one "key<TAB>server<TAB>json" line
// per run (blank lines skipped), where key is what the rows group by (keyName: "N", "load")
// and json the client's report. It calls run for each line in order; an error, run's or a
// malformed line's, names the line.
func ReadRuns(in io.Reader, keyName string, run func(key, server string, report []byte) error) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		parts := strings.SplitN(text, "\t", 3)
		if len(parts) != 3 {
			return fmt.Errorf("line %d: want %s<TAB>server<TAB>json", line, keyName)
		}
		if err := run(parts[0], parts[1], []byte(parts[2])); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
	}
	return sc.Err()
}
