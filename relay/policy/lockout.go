package policy

import (
	"sync"
	"time"
)

// Lockout refuses a name after too many failures: failures are counted in a window that
// starts at a name's first failure, and the one that reaches the limit locks the name for
// the same duration. The relay keys it by static username, so that a password is guessed at
// no more than limit tries per window however many addresses the guesser sends from. Time
// is injected (nanoseconds from any monotonic origin).
//
// Memory is bounded by maxKeys names: when full, names whose window and lock have passed
// are forgotten, and if none has, a new name is not tracked (its failures are not counted)
// until one has. The relay tracks only configured static users, so the bound is not reached
// when maxKeys exceeds their number.
type Lockout struct {
	limit  int   // Static after construction; <= 0 disables the lockout.
	window int64 // nanoseconds. Static after construction.
	max    int   // Static after construction.

	mu    sync.Mutex
	names map[string]*lockState // Guarded by mu.
}

type lockState struct {
	failures int
	start    int64 // nanoseconds: the window's first failure
	until    int64 // nanoseconds: locked before this
}

// NewLockout returns a Lockout that locks a name for window after limit failures within
// window, tracking at most maxKeys names. limit <= 0 disables it (nothing is ever locked).
func NewLockout(limit int, window time.Duration, maxKeys int) *Lockout {
	return &Lockout{limit: limit, window: int64(window), max: max(maxKeys, 1), names: map[string]*lockState{}}
}

// Locked reports whether name is refused at nowNanos.
func (l *Lockout) Locked(name string, nowNanos int64) bool {
	if l.limit <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.names[name]
	return ok && nowNanos < st.until
}

// Fail counts a failure for name at nowNanos and reports whether name is locked after it. A
// failure while name is locked is not counted (the lock is not extended).
func (l *Lockout) Fail(name string, nowNanos int64) bool {
	if l.limit <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st, ok := l.names[name]
	if !ok {
		if len(l.names) >= l.max && !l.forgetPassedLocked(nowNanos) {
			return false
		}
		st = &lockState{start: nowNanos}
		l.names[name] = st
	}
	if nowNanos < st.until {
		return true
	}
	if nowNanos-st.start >= l.window {
		st.failures, st.start = 0, nowNanos
	}
	st.failures++
	if st.failures >= l.limit {
		st.failures, st.until = 0, nowNanos+l.window
		return true
	}
	return false
}

// forgetPassedLocked forgets every name whose window and lock have passed, and reports
// whether it forgot any.
func (l *Lockout) forgetPassedLocked(nowNanos int64) bool {
	n := len(l.names)
	for name, st := range l.names {
		if nowNanos >= st.until && nowNanos-st.start >= l.window {
			delete(l.names, name)
		}
	}
	return len(l.names) < n
}
