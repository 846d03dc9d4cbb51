package policy

import (
	"net/netip"
	"sync"
)

// Limiter is a bounded per-key token-bucket table: at most maxKeys keys, the
// least recently used evicted first, each refilled at rate tokens per second
// up to burst. The relay keys it by source address for Allocate requests and
// for 401 answers, so the edge is neither a brute-force oracle nor an
// amplifier. Time is injected (nanoseconds from any monotonic origin).
//
// Keys are normalised: IPv4-mapped addresses count as their IPv4 address,
// zones are ignored, and an IPv6 address counts as its /64 (one subscriber
// owns a whole /64, RFC 6177, and could otherwise rotate through it).
//
// Memory is bounded by maxKeys slots allocated up front; once every slot has
// been used, Allow does not allocate. Evicting a key forgets its debt, so the
// bound must exceed the number of sources expected within one refill period.
type Limiter struct {
	// Static after construction.
	rate  float64 // tokens per nanosecond; <= 0 disables the limiter
	burst float64

	mu sync.Mutex
	// Guarded by mu.
	index      map[netip.Addr]int32
	slots      []limSlot // len grows to cap (maxKeys), never beyond
	head, tail int32     // most and least recently used slot; -1 when empty
}

type limSlot struct {
	key        netip.Addr
	tokens     float64
	last       int64 // nanoseconds of the last refill
	prev, next int32 // LRU neighbours, -1 at the ends
}

// NewLimiter returns a Limiter allowing rate events per second per key with
// bursts of burst events, remembering at most maxKeys keys. rate <= 0 disables
// it (every call is allowed); burst < 1 is taken as 1 and maxKeys < 1 as 1.
func NewLimiter(rate float64, burst int, maxKeys int) *Limiter {
	burst = max(burst, 1)
	maxKeys = max(maxKeys, 1)
	return &Limiter{
		rate:  rate / 1e9,
		burst: float64(burst),
		index: make(map[netip.Addr]int32, maxKeys),
		slots: make([]limSlot, 0, maxKeys),
		head:  -1,
		tail:  -1,
	}
}

// limiterKey normalises a source address to the key it is counted under.
func limiterKey(a netip.Addr) netip.Addr {
	a = a.WithZone("").Unmap()
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

// Allow reports whether one more event from key may pass at nowNanos, and
// spends a token if so. A key not seen before (or evicted) starts with a full
// burst. Time that runs backwards refills nothing.
func (l *Limiter) Allow(key netip.Addr, nowNanos int64) bool {
	if l.rate <= 0 {
		return true
	}
	key = limiterKey(key)

	l.mu.Lock()
	defer l.mu.Unlock()

	i, ok := l.index[key]
	if ok {
		s := &l.slots[i]
		if nowNanos > s.last {
			s.tokens = min(l.burst, s.tokens+float64(nowNanos-s.last)*l.rate)
			s.last = nowNanos
		}
		l.unlinkLocked(i)
	} else {
		if len(l.slots) < cap(l.slots) {
			l.slots = append(l.slots, limSlot{})
			i = int32(len(l.slots) - 1)
		} else {
			i = l.tail
			l.unlinkLocked(i)
			delete(l.index, l.slots[i].key)
		}
		l.slots[i] = limSlot{key: key, tokens: l.burst, last: nowNanos}
		l.index[key] = i
	}
	l.pushFrontLocked(i)

	s := &l.slots[i]
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	return false
}

// Len returns the number of keys currently remembered (at most maxKeys).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.index)
}

func (l *Limiter) unlinkLocked(i int32) {
	s := &l.slots[i]
	if s.prev >= 0 {
		l.slots[s.prev].next = s.next
	} else {
		l.head = s.next
	}
	if s.next >= 0 {
		l.slots[s.next].prev = s.prev
	} else {
		l.tail = s.prev
	}
	s.prev, s.next = -1, -1
}

func (l *Limiter) pushFrontLocked(i int32) {
	s := &l.slots[i]
	s.prev, s.next = -1, l.head
	if l.head >= 0 {
		l.slots[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}
