package portalloc

import (
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// portState is the state of one port of the range.
type portState uint8

const (
	stFree portState = iota
	stHeld
	stBinding // taken out of the free set; bind is running outside the lock
	stReserved
	stQuarantined
	stForeign
	numStates
)

var stateNames = [numStates]string{"free", "held", "being bound", "reserved", "quarantined", "held by another process"}

func (s portState) String() string { return stateNames[s] }

// Allocator hands out ports of one range. It is safe for concurrent use.
// The zero value is not usable; call New.
type Allocator struct {
	// Static after construction.
	min, max        uint16
	n               int
	quarantine      time.Duration
	reservationTTL  time.Duration
	foreignCooldown time.Duration
	now             func() time.Time
	base            time.Time // deadlines are nanoseconds since base
	log             *slog.Logger

	mu sync.Mutex
	// Guarded by mu.
	rng         *rand.Rand
	state       []portState
	deadline    []int64  // expiry of a quarantined, reserved or foreign port
	token       []Token  // token of a reserved port
	free        denseSet // free ports
	pairs       denseSet // even ports P (as index) with P and P+1 both free
	quarantined fifo
	foreign     fifo
	reserved    fifo
	byToken     map[Token]int32

	// Written under mu, read without it by Stats.
	count [numStates]atomic.Int64
}

// New returns an Allocator for the ports min..max inclusive, all free.
//
// RFC 8656, Section 7.2 (the words of RFC 5766, Section 6.2):
//
//	In any case, the TURN server SHOULD NOT allocate ports in the range
//	0 - 1023 (the Well-Known Port range) to discourage clients from using
//	TURN to run standard services.
func New(min, max uint16, opts ...Option) (*Allocator, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case min < 1024:
		return nil, fmt.Errorf("portalloc: min-port %d is a well-known port (below 1024); choose a range at or above 1024, e.g. 50000-59999", min)
	case min > max:
		return nil, fmt.Errorf("portalloc: min-port %d is above max-port %d; set min-port <= max-port", min, max)
	case o.quarantine < 0:
		return nil, fmt.Errorf("portalloc: quarantine %v is negative; use 0 to disable it", o.quarantine)
	case o.reservationTTL <= 0:
		return nil, fmt.Errorf("portalloc: reservation TTL %v must be positive; RFC 8656 asks for at least 30s", o.reservationTTL)
	case o.foreignCooldown <= 0:
		return nil, fmt.Errorf("portalloc: foreign-port cooldown %v must be positive, e.g. 1m", o.foreignCooldown)
	case o.now == nil:
		return nil, errors.New("portalloc: clock is nil; omit WithClock to use time.Now")
	}
	if !o.seeded {
		var b [8]byte
		_, _ = crand.Read(b[:]) // never fails since Go 1.24
		o.seed = binary.LittleEndian.Uint64(b[:])
	}
	n := int(max) - int(min) + 1
	l := newLinks(n)
	a := &Allocator{
		min:             min,
		max:             max,
		n:               n,
		quarantine:      o.quarantine,
		reservationTTL:  o.reservationTTL,
		foreignCooldown: o.foreignCooldown,
		now:             o.now,
		base:            o.now(),
		log:             o.log,
		rng:             rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)),
		state:           make([]portState, n),
		deadline:        make([]int64, n),
		token:           make([]Token, n),
		free:            newDenseSet(n),
		pairs:           newDenseSet(n),
		quarantined:     newFIFO(l),
		foreign:         newFIFO(l),
		reserved:        newFIFO(l),
		byToken:         make(map[Token]int32),
	}
	for i := range int32(n) {
		a.free.add(i)
		if p := a.pairBase(i); p == i {
			a.pairs.add(i)
		}
	}
	a.count[stFree].Store(int64(n))
	return a, nil
}

// Range returns the first and last port of the range.
func (a *Allocator) Range() (min, max uint16) { return a.min, a.max }

// Stats counts the ports of the range by state.
type Stats struct {
	Capacity    int // ports in the range
	Free        int
	Held        int // handed out (including ports whose bind is in progress)
	Reserved    int // odd halves of EVEN-PORT pairs waiting for their token
	Quarantined int // released, resting; expired ones are reclaimed on the next call
	Foreign     int // found held by another process, cooling down
}

// Stats reads atomics only (no lock): it is safe to call from a Prometheus
// scrape while the Allocator is busy. Each count is exact at some instant,
// but a read racing with a state change may see a port in two counts or in
// none, so the sum can be off by the number of changes in flight.
func (a *Allocator) Stats() Stats {
	return Stats{
		Capacity:    a.n,
		Free:        int(a.count[stFree].Load()),
		Held:        int(a.count[stHeld].Load() + a.count[stBinding].Load()),
		Reserved:    int(a.count[stReserved].Load()),
		Quarantined: int(a.count[stQuarantined].Load()),
		Foreign:     int(a.count[stForeign].Load()),
	}
}

// Acquire draws a port uniformly at random from the free ones, marks it held
// and calls bind(port) outside the Allocator's lock (bind may be nil).
//
// If bind fails with EADDRINUSE or EACCES the port is held by another
// process: it is set aside for the foreign-port cooldown and the next random
// free port is tried, so Acquire returns ErrExhausted only when every free
// port has been tried. On any other bind error the port goes back to free
// and the error is returned, wrapped. Quarantined ports are handed out,
// oldest release first, only when no port is free.
//
// RFC 8656, Section 7.2 (the words of RFC 5766, Section 6.2):
//
//	NOTE: The IETF is currently investigating the topic of randomized
//	port assignments to avoid certain types of attacks (see
//	[TSVWG-PORT]).  It is strongly recommended that a TURN implementor
//	keep abreast of this topic and, if appropriate, implement a
//	randomized port assignment algorithm.
func (a *Allocator) Acquire(bind func(port uint16) error) (uint16, error) {
	// Each failed try moves one port out of the free set for the cooldown,
	// so n+1 tries cover every port even if others are released meanwhile.
	for range a.n + 1 {
		a.mu.Lock()
		a.tickLocked(false)
		var i int32
		switch {
		case a.free.len() > 0:
			i = a.free.pick(a.rng)
		case a.quarantined.front() >= 0:
			i = a.quarantined.front()
		default:
			a.mu.Unlock()
			return 0, ErrExhausted
		}
		port := a.port(i)
		if bind == nil {
			a.moveLocked(i, stHeld, 0)
			a.mu.Unlock()
			return port, nil
		}
		a.moveLocked(i, stBinding, 0)
		a.mu.Unlock()

		err := a.finishBind(i, bind)
		switch {
		case err == nil:
			return port, nil
		case isForeign(err):
			continue
		default:
			return 0, err
		}
	}
	return 0, ErrExhausted
}

// AcquirePort holds port if it is free, calling bind like Acquire does. It
// fails with ErrInUse if the port is held, reserved, quarantined or held by
// another process (including when bind reports EADDRINUSE or EACCES), and
// with ErrOutOfRange (wrapping ErrInUse) if it lies outside the range.
func (a *Allocator) AcquirePort(port uint16, bind func(port uint16) error) error {
	if port < a.min || port > a.max {
		return fmt.Errorf("portalloc: port %d outside %d-%d: %w: %w", port, a.min, a.max, ErrOutOfRange, ErrInUse)
	}
	i := a.index(port)
	a.mu.Lock()
	a.tickLocked(false)
	if st := a.state[i]; st != stFree {
		a.mu.Unlock()
		return fmt.Errorf("portalloc: port %d is %v: %w", port, st, ErrInUse)
	}
	if bind == nil {
		a.moveLocked(i, stHeld, 0)
		a.mu.Unlock()
		return nil
	}
	a.moveLocked(i, stBinding, 0)
	a.mu.Unlock()
	return a.finishBind(i, bind)
}

// Release gives back a held port; it rests in quarantine before it is handed
// out again (at once if the quarantine is 0). Releasing a port that is not
// held — out of range, free, reserved, already released, or still being
// bound — does nothing.
func (a *Allocator) Release(port uint16) {
	if port < a.min || port > a.max {
		return
	}
	i := a.index(port)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.tickLocked(a.quarantine > 0)
	if a.state[i] != stHeld {
		return
	}
	if a.quarantine == 0 {
		a.moveLocked(i, stFree, 0)
		return
	}
	a.moveLocked(i, stQuarantined, now+int64(a.quarantine))
}

// ReleaseUnused gives back a held port at once, without quarantine: for a
// port on which no packet was ever relayed. Like Release, it does nothing
// for a port that is not held.
func (a *Allocator) ReleaseUnused(port uint16) {
	if port < a.min || port > a.max {
		return
	}
	i := a.index(port)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tickLocked(false)
	if a.state[i] == stHeld {
		a.moveLocked(i, stFree, 0)
	}
}

// finishBind runs bind for a port in stBinding, without the lock, and moves
// the port to held (bind succeeded), foreign (EADDRINUSE, EACCES) or free
// (any other error). The returned error wraps ErrInUse in the foreign case.
func (a *Allocator) finishBind(i int32, bind func(port uint16) error) error {
	port := a.port(i)
	err := bind(port)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil:
		a.moveLocked(i, stHeld, 0)
		return nil
	case isForeign(err):
		now := a.clock()
		a.moveLocked(i, stForeign, now+int64(a.foreignCooldown))
		a.log.Warn("portalloc: relay port held by another process; skipping it",
			"port", port, "retry_after", a.foreignCooldown, "err", err)
		return fmt.Errorf("portalloc: bind %d: %w: %w", port, ErrInUse, err)
	default:
		a.moveLocked(i, stFree, 0)
		return fmt.Errorf("portalloc: bind %d: %w", port, err)
	}
}

// isForeign reports whether a bind error means another process holds the port.
func isForeign(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES)
}

// clock returns the injected clock as nanoseconds since construction.
func (a *Allocator) clock() int64 { return int64(a.now().Sub(a.base)) }

func (a *Allocator) port(i int32) uint16 { return a.min + uint16(i) }

func (a *Allocator) index(port uint16) int32 { return int32(port - a.min) }

// pairBase returns the index of the even port P of the pair (P, P+1) that
// index i belongs to, or -1 if that pair does not lie wholly in the range.
func (a *Allocator) pairBase(i int32) int32 {
	p := int(a.port(i)) &^ 1
	if p < int(a.min) || p+1 > int(a.max) {
		return -1
	}
	return int32(p - int(a.min))
}

// tickLocked reclaims expired ports and returns the time (see clock). The
// clock is read only when a port is waiting for a deadline or need is set,
// which keeps time.Now off the common path when there is nothing to expire.
func (a *Allocator) tickLocked(need bool) int64 {
	if !need && a.quarantined.front() < 0 && a.foreign.front() < 0 && a.reserved.front() < 0 {
		return 0
	}
	now := a.clock()
	a.reclaimLocked(now)
	return now
}

// reclaimLocked returns to the free set every quarantined, foreign and
// reserved port whose deadline has passed. Each list is in deadline order,
// so it stops at the first port still waiting.
func (a *Allocator) reclaimLocked(now int64) {
	for _, f := range [...]*fifo{&a.quarantined, &a.foreign, &a.reserved} {
		for i := f.front(); i >= 0 && a.deadline[i] <= now; i = f.front() {
			a.moveLocked(i, stFree, 0)
		}
	}
}

// moveLocked moves port index i from its current state to st, keeping the
// free set, the pair set, the lists, the token map and the counts in step.
// deadline is used for the timed states (quarantined, foreign, reserved);
// for reserved, the caller then sets a.token[i] and a.byToken.
func (a *Allocator) moveLocked(i int32, st portState, deadline int64) {
	from := a.state[i]
	if from == st {
		return
	}
	switch from {
	case stFree:
		a.free.remove(i)
		if p := a.pairBase(i); p >= 0 {
			a.pairs.remove(p)
		}
	case stQuarantined:
		a.quarantined.remove(i)
	case stForeign:
		a.foreign.remove(i)
	case stReserved:
		a.reserved.remove(i)
		delete(a.byToken, a.token[i])
		a.token[i] = Token{}
	}
	a.state[i] = st
	a.deadline[i] = deadline
	switch st {
	case stFree:
		a.free.add(i)
		if p := a.pairBase(i); p >= 0 && a.state[p] == stFree && a.state[p+1] == stFree {
			a.pairs.add(p)
		}
	case stQuarantined:
		a.quarantined.push(i)
	case stForeign:
		a.foreign.push(i)
	case stReserved:
		a.reserved.push(i)
	}
	a.count[from].Add(-1)
	a.count[st].Add(1)
}
