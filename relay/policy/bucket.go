package policy

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// Bucket is a lock-free token bucket in bytes for bandwidth caps on the hot
// path (per allocation, per user): Take(n, now) reports whether n bytes may
// pass. It allocates nothing, uses atomics only (one CAS per Take in the
// common case) and is safe for concurrent use. Rate 0 means unlimited, and
// the zero Bucket is unlimited.
//
// It is a GCRA (generic cell rate algorithm) meter: the only state is the
// theoretical arrival time (TAT) — the time at which the bucket would be full
// again — so one atomic word holds it and no lock is needed. Taking n bytes
// pushes the TAT n/rate seconds later; the take is refused when that would put
// the TAT more than burst/rate seconds past now. This is exactly a token
// bucket of burstBytes refilled at bytesPerSecond, with nanosecond resolution
// (each Take is rounded up to a whole nanosecond of rate).
type Bucket struct {
	params atomic.Pointer[bucketParams] // nil: unlimited
	tat    atomic.Int64                 // theoretical arrival time, nanoseconds
}

type bucketParams struct {
	rate  uint64 // bytes per second, > 0
	burst int64  // bytes, > 0
	tau   int64  // burst expressed in nanoseconds of rate
}

// casAttempts bounds the CAS loop in Take. Every failed CAS means another
// Take succeeded, so reaching the bound means heavy contention on one
// bucket; the packet is then refused rather than spinning on.
const casAttempts = 64

// maxNanos caps converted durations so that now+duration never overflows.
const maxNanos = math.MaxInt64 / 4

// NewBucket returns a Bucket passing bytesPerSecond with bursts of burstBytes.
// bytesPerSecond <= 0 means unlimited; burstBytes <= 0 means one second's
// worth (bytesPerSecond). The bucket starts full.
func NewBucket(bytesPerSecond int64, burstBytes int64) *Bucket {
	b := &Bucket{}
	b.SetRate(bytesPerSecond, burstBytes)
	return b
}

// SetRate changes the rate and burst (same conventions as [NewBucket]) for
// every later Take; bytes already taken stay accounted at the old rate.
func (b *Bucket) SetRate(bytesPerSecond, burstBytes int64) {
	if bytesPerSecond <= 0 {
		b.params.Store(nil)
		return
	}
	if burstBytes <= 0 {
		burstBytes = bytesPerSecond
	}
	rate := uint64(bytesPerSecond)
	b.params.Store(&bucketParams{
		rate:  rate,
		burst: burstBytes,
		tau:   ceilNanos(uint64(burstBytes), rate),
	})
}

// Rate returns the current rate and burst; (0, 0) when unlimited.
func (b *Bucket) Rate() (bytesPerSecond, burstBytes int64) {
	p := b.params.Load()
	if p == nil {
		return 0, 0
	}
	return int64(p.rate), p.burst
}

// Take reports whether n bytes may pass at nowNanos, and accounts them if
// so. A refused Take accounts nothing. n <= 0 always passes; n larger than
// the burst never does.
func (b *Bucket) Take(n int, nowNanos int64) bool {
	p := b.params.Load()
	if p == nil || n <= 0 {
		return true
	}
	if int64(n) > p.burst {
		return false
	}
	inc := ceilNanos(uint64(n), p.rate)
	for range casAttempts {
		tat := b.tat.Load()
		next := max(tat, nowNanos) + inc
		if next-nowNanos > p.tau {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
	return false
}

// ceilNanos returns ceil(bytes * 1e9 / rate), the time rate takes to pass
// bytes, capped at maxNanos.
func ceilNanos(bytes, rate uint64) int64 {
	hi, lo := bits.Mul64(bytes, 1e9)
	if hi >= rate {
		return maxNanos
	}
	q, r := bits.Div64(hi, lo, rate)
	if r != 0 {
		q++
	}
	if q > maxNanos {
		return maxNanos
	}
	return int64(q)
}
