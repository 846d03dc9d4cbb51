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
// It is a GCRA (generic cell rate algorithm) meter kept on a byte clock: time
// since the bucket's first Take is converted to "bytes the rate would have
// passed" (floor(elapsed × rate / 1e9), exact 128-bit arithmetic), and the
// only mutable word is the theoretical arrival time (TAT) on that clock.
// Taking n bytes moves the TAT n later; a Take is refused when that would put
// the TAT more than burst bytes ahead of now. That is exactly a token bucket
// of burstBytes refilled at bytesPerSecond, with no rounding that accumulates
// from one Take to the next.
type Bucket struct {
	state atomic.Pointer[bucketState] // nil: unlimited
}

// bucketState is replaced as a whole by SetRate, so rate, burst and the TAT
// they give meaning to always change together.
type bucketState struct {
	rate   uint64       // bytes per second, > 0; static
	burst  int64        // bytes, > 0; static
	origin atomic.Int64 // nowNanos of the first Take; unsetOrigin before
	tat    atomic.Int64 // theoretical arrival time, bytes since origin
}

const (
	unsetOrigin = math.MinInt64
	// casAttempts bounds the CAS loop in Take. Every failed CAS means another
	// Take succeeded, so reaching the bound means heavy contention on one
	// bucket; the packet is then refused rather than spinning on.
	casAttempts = 64
	// maxClock caps the byte clock so that clock+burst never overflows
	// (reached after 2^61 bytes at the configured rate).
	maxClock = math.MaxInt64 / 4
)

// NewBucket returns a Bucket passing bytesPerSecond with bursts of burstBytes.
// bytesPerSecond <= 0 means unlimited; burstBytes <= 0 means one second's
// worth (bytesPerSecond). The bucket starts full.
func NewBucket(bytesPerSecond int64, burstBytes int64) *Bucket {
	b := &Bucket{}
	b.SetRate(bytesPerSecond, burstBytes)
	return b
}

// SetRate changes the rate and burst (same conventions as [NewBucket]). The
// bucket restarts full: bytes taken before are forgotten. Takes racing with
// SetRate are accounted to the old or the new setting, never to a mix.
func (b *Bucket) SetRate(bytesPerSecond, burstBytes int64) {
	if bytesPerSecond <= 0 {
		b.state.Store(nil)
		return
	}
	if burstBytes <= 0 {
		burstBytes = bytesPerSecond
	}
	s := &bucketState{rate: uint64(bytesPerSecond), burst: min(burstBytes, maxClock)}
	s.origin.Store(unsetOrigin)
	b.state.Store(s)
}

// Rate returns the current rate and burst; (0, 0) when unlimited.
func (b *Bucket) Rate() (bytesPerSecond, burstBytes int64) {
	s := b.state.Load()
	if s == nil {
		return 0, 0
	}
	return int64(s.rate), s.burst
}

// Take reports whether n bytes may pass at nowNanos, and accounts them if
// so. A refused Take accounts nothing. n <= 0 always passes; n larger than
// the burst never does. Time that runs backwards refills nothing.
func (b *Bucket) Take(n int, nowNanos int64) bool {
	s := b.state.Load()
	if s == nil || n <= 0 {
		return true
	}
	if int64(n) > s.burst {
		return false
	}
	origin := s.origin.Load()
	if origin == unsetOrigin {
		s.origin.CompareAndSwap(unsetOrigin, nowNanos)
		origin = s.origin.Load()
	}
	var clock int64
	if nowNanos > origin {
		clock = byteClock(uint64(nowNanos-origin), s.rate)
	}
	for range casAttempts {
		tat := s.tat.Load()
		next := max(tat, clock) + int64(n)
		if next-clock > s.burst {
			return false
		}
		if s.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
	return false
}

// byteClock returns floor(elapsed * rate / 1e9), the bytes rate passes in
// elapsed nanoseconds, capped at maxClock.
func byteClock(elapsed, rate uint64) int64 {
	hi, lo := bits.Mul64(elapsed, rate)
	if hi >= 1e9 {
		return maxClock
	}
	q, _ := bits.Div64(hi, lo, 1e9)
	if q > maxClock {
		return maxClock
	}
	return int64(q)
}
