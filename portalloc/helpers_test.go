package portalloc

import (
	"fmt"
	"sync/atomic"
	"time"
)

// fakeClock is an injected clock that moves only when told to.
type fakeClock struct{ ns atomic.Int64 }

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func (c *fakeClock) now() time.Time          { return epoch.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// check verifies every internal invariant of the Allocator: each port in
// exactly one state, the free and pair sets and the lists matching the
// states, tokens matching reservations, lists in deadline order, and the
// atomic counts matching the states.
func (a *Allocator) check() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var counts [numStates]int
	for i := range int32(a.n) {
		st := a.state[i]
		counts[st]++
		if got := a.free.has(i); got != (st == stFree) {
			return fmt.Errorf("port %d is %v but in free set = %v", a.port(i), st, got)
		}
		if p := a.pairBase(i); p == i {
			want := a.state[p] == stFree && a.state[p+1] == stFree
			if got := a.pairs.has(p); got != want {
				return fmt.Errorf("pair %d: in pair set = %v, want %v", a.port(p), got, want)
			}
		} else if a.pairs.has(i) {
			return fmt.Errorf("port %d is in the pair set but is no pair base", a.port(i))
		}
		if st == stReserved {
			if a.token[i] == (Token{}) {
				return fmt.Errorf("reserved port %d has the zero token", a.port(i))
			}
			if j, ok := a.byToken[a.token[i]]; !ok || j != i {
				return fmt.Errorf("reserved port %d: token maps to %d, %v", a.port(i), j, ok)
			}
		} else if a.token[i] != (Token{}) {
			return fmt.Errorf("port %d is %v but has a token", a.port(i), st)
		}
	}
	if len(a.byToken) != counts[stReserved] {
		return fmt.Errorf("%d tokens for %d reserved ports", len(a.byToken), counts[stReserved])
	}
	if a.free.len() != counts[stFree] {
		return fmt.Errorf("free set has %d members, %d ports are free", a.free.len(), counts[stFree])
	}
	for _, l := range []struct {
		f  *fifo
		st portState
	}{{&a.quarantined, stQuarantined}, {&a.foreign, stForeign}, {&a.reserved, stReserved}} {
		n, prev, last := 0, int32(-1), int64(-1<<63)
		for i := l.f.front(); i >= 0; i = l.f.next(i) {
			if n++; n > a.n {
				return fmt.Errorf("%v list has a cycle", l.st)
			}
			if a.state[i] != l.st {
				return fmt.Errorf("port %d on the %v list is %v", a.port(i), l.st, a.state[i])
			}
			if a.l(l.f).prev[i] != prev {
				return fmt.Errorf("%v list: bad prev link at port %d", l.st, a.port(i))
			}
			if a.deadline[i] < last {
				return fmt.Errorf("%v list out of deadline order at port %d", l.st, a.port(i))
			}
			prev, last = i, a.deadline[i]
		}
		if l.f.tail != prev {
			return fmt.Errorf("%v list: tail %d, last %d", l.st, l.f.tail, prev)
		}
		if n != counts[l.st] {
			return fmt.Errorf("%v list has %d ports, %d are %v", l.st, n, counts[l.st], l.st)
		}
	}
	for st := range numStates {
		if got := a.count[st].Load(); got != int64(counts[st]) {
			return fmt.Errorf("count of %v is %d, want %d", st, got, counts[st])
		}
	}
	return nil
}

func (a *Allocator) l(f *fifo) *links { return f.l }
