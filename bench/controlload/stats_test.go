package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

func TestSummarize(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Latency
	}{
		{"none", nil, Latency{}},
		{"one", ms(7), Latency{Count: 1, P50: 7, P90: 7, P99: 7, Max: 7, Mean: 7}},
		{"nearest rank", ms(hundred...), Latency{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}},
		{"p99 of ten is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), Latency{Count: 10, P50: 5, P90: 9, P99: 10, Max: 10, Mean: 5.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTenthRates(t *testing.T) {
	s := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	t.Run("fewer than ten", func(t *testing.T) {
		if got := tenthRates([]time.Duration{1, 2, 3}); got != nil {
			t.Errorf("tenthRates of 3 = %v, want nil", got)
		}
	})
	t.Run("slowing down", func(t *testing.T) {
		// 100 completions: the first 50 at 10 ms intervals, the last 50 at 100 ms.
		var done []time.Duration
		for i := 1; i <= 50; i++ {
			done = append(done, s(0.01*float64(i)))
		}
		for i := 1; i <= 50; i++ {
			done = append(done, s(0.5+0.1*float64(i)))
		}
		slices.Reverse(done) // any order
		got := tenthRates(done)
		want := []float64{100, 100, 100, 100, 100, 10, 10, 10, 10, 10}
		if len(got) != 10 {
			t.Fatalf("%d tenths", len(got))
		}
		for i := range want {
			if d := got[i] - want[i]; d > 1e-6 || d < -1e-6 {
				t.Errorf("tenth %d: %.3f/s, want %.0f/s (all %v)", i, got[i], want[i], got)
			}
		}
	})
	t.Run("uneven split covers every completion", func(t *testing.T) {
		done := make([]time.Duration, 25)
		for i := range done {
			done[i] = s(float64(i + 1))
		}
		got := tenthRates(done)
		total := 0.0
		var prev time.Duration
		for k, r := range got {
			end := done[(k+1)*25/10-1]
			total += r * (end - prev).Seconds()
			prev = end
		}
		if total < 24.999 || total > 25.001 {
			t.Errorf("tenths account for %.3f completions, want 25 (%v)", total, got)
		}
	})
}

func TestErrorClass(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"pion's error response", fmt.Errorf("allocate: %w", &stun.TurnError{ErrorCodeAttr: stun.ErrorCodeAttribute{Code: stun.CodeAllocMismatch}}), "437"},
		{"ours", fmt.Errorf("refresh: %w", codeError(stun.CodeInsufficientCapacity)), "508"},
		{"deadline", context.DeadlineExceeded, "timeout"},
		{"no nonce", errNoNonce, "no-nonce"},
		{"anything else", errors.New("boom"), "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorClass(tt.err); got != tt.want {
				t.Errorf("errorClass(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tturnserver\nVmPeak:\t  900000 kB\nVmRSS:\t  241400 kB\nRssAnon:\t  200000 kB\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil || got != 241400*1024 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 241400*1024)
	}
	for _, bad := range []string{"Name:\tkthreadd\nState:\tS\n", "VmRSS:\tlots kB\n", "VmRSS:\t12 MB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) accepted", bad)
		}
	}
}

func TestSourceAddrs(t *testing.T) {
	got, err := sourceAddrs(netip.MustParseAddr("127.0.1.255"), 3)
	want := []netip.Addr{netip.MustParseAddr("127.0.1.255"), netip.MustParseAddr("127.0.2.0"), netip.MustParseAddr("127.0.2.1")}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("sourceAddrs = %v, %v; want %v", got, err, want)
	}
	if _, err := sourceAddrs(netip.MustParseAddr("127.255.255.255"), 2); err == nil {
		t.Error("sourceAddrs left 127.0.0.0/8 without an error")
	}
}
