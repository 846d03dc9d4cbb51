package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/pion/stun/v4"
)

// Latency percentiles of one kind of transaction, in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// summarize returns the percentiles of d (nearest rank). d is sorted in place.
func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	rank := func(p float64) time.Duration {
		// Nearest rank: the smallest value with at least p% of the values at or below it.
		i := int(float64(len(d))*p/100+0.999999999) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Latency{
		Count: len(d),
		P50:   ms(rank(50)), P90: ms(rank(90)), P99: ms(rank(99)),
		Max:  ms(d[len(d)-1]),
		Mean: ms(sum / time.Duration(len(d))),
	}
}

// tenthRates splits the completion times of successful allocations (offsets from the start
// of the run, any order; sorted in place) into tenths and returns the rate of each tenth in
// allocations per second: tenth k holds allocations ⌊k·n/10⌋+1..⌊(k+1)·n/10⌋ and its rate is
// their count over the time from the previous tenth's last completion (the start, for the
// first) to its own last one. So the last tenth's rate is the rate with 90–100 % of the
// allocations live. Fewer than 10 completions: nil.
func tenthRates(done []time.Duration) []float64 {
	n := len(done)
	if n < 10 {
		return nil
	}
	slices.Sort(done)
	rates := make([]float64, 10)
	var prev time.Duration
	for k := range 10 {
		lo, hi := k*n/10, (k+1)*n/10
		end := done[hi-1]
		if span := (end - prev).Seconds(); span > 0 {
			rates[k] = float64(hi-lo) / span
		}
		prev = end
	}
	return rates
}

// errorClass names an error of a transaction for the failure counts: the STUN error code
// ("437", "508", …) when the server answered one, else a short cause.
func errorClass(err error) string {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return strconv.Itoa(int(te.ErrorCodeAttr.Code))
	}
	var ce codeError
	if errors.As(err, &ce) {
		return strconv.Itoa(int(ce))
	}
	var to interface{ Timeout() bool }
	if errors.As(err, &to) && to.Timeout() {
		return "timeout"
	}
	if errors.Is(err, errNoNonce) {
		return "no-nonce"
	}
	return "other"
}

// codeError is an error response of one of our own transactions.
type codeError stun.ErrorCode

func (c codeError) Error() string { return fmt.Sprintf("error response %d", int(c)) }

var errNoNonce = errors.New("no nonce learned from the server")

// readRSS returns VmRSS of process pid in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS returns the VmRSS line of /proc/PID/status in bytes. proc(5): "VmRSS: Resident
// set size", in kB.
func parseVmRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 || string(f[0]) != "VmRSS:" {
			continue
		}
		kb, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", f[1], err)
		}
		if len(f) > 2 && string(f[2]) != "kB" {
			return 0, fmt.Errorf("VmRSS in %q, want kB", f[2])
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line (a kernel thread, or a zombie)")
}
