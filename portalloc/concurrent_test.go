package portalloc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestConcurrentNeverHandsOutAHeldPort is the randomised property test: many
// goroutines acquire, reserve, redeem and release ports of a small range
// while a fake clock moves, and a shared ledger checks that no port is ever
// handed out (bound) while someone holds it, and that a port the "kernel"
// refused is not retried before its cooldown. Run it with -race.
func TestConcurrentNeverHandsOutAHeldPort(t *testing.T) {
	const (
		lo, hi     = 20000, 20031
		n          = hi - lo + 1
		workers    = 8
		opsPerWork = 3000
		cooldown   = 2 * time.Second
	)
	clk := &fakeClock{}
	a := mustNew(t, lo, hi, WithClock(clk.now), WithSeed(42),
		WithQuarantine(time.Second), WithReservationTTL(3*time.Second), WithForeignCooldown(cooldown))

	var (
		owner        [n]atomic.Int32 // 1 while some worker holds the port
		foreignUntil [n]atomic.Int64 // fake-clock ns before which the port must not be tried
		handedOut    atomic.Int64
		errMu        sync.Mutex
		firstErr     error
	)
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = fmt.Errorf(format, args...)
		}
	}
	// bind is the fake kernel: it refuses ~5% of binds with EADDRINUSE.
	makeBind := func(r *rand.Rand) func(uint16) error {
		return func(p uint16) error {
			i := p - lo
			now := clk.ns.Load()
			if until := foreignUntil[i].Load(); now < until {
				fail("port %d retried %v before its cooldown ended", p, time.Duration(until-now))
			}
			if r.IntN(20) == 0 {
				foreignUntil[i].Store(now + int64(cooldown))
				return syscall.EADDRINUSE
			}
			if !owner[i].CompareAndSwap(0, 1) {
				fail("port %d handed out while held", p)
			}
			handedOut.Add(1)
			return nil
		}
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			bind := makeBind(r)
			var held []uint16
			var toks []Token
			var reservedPorts []uint16
			release := func(k int, unused bool) {
				p := held[k]
				held[k] = held[len(held)-1]
				held = held[:len(held)-1]
				owner[p-lo].Store(0) // before Release: afterwards another worker may get it
				if unused {
					a.ReleaseUnused(p)
				} else {
					a.Release(p)
				}
			}
			for range opsPerWork {
				switch op := r.IntN(100); {
				case op < 30:
					if p, err := a.Acquire(bind); err == nil {
						held = append(held, p)
					} else if !errors.Is(err, ErrExhausted) {
						fail("Acquire: %v", err)
					}
				case op < 38:
					if p, tok, err := a.AcquireEven(bind); err == nil {
						held = append(held, p)
						toks = append(toks, tok)
						reservedPorts = append(reservedPorts, p+1)
					} else if !errors.Is(err, ErrExhausted) {
						fail("AcquireEven: %v", err)
					}
				case op < 43 && len(toks) > 0:
					tok := toks[len(toks)-1]
					toks = toks[:len(toks)-1]
					if p, err := a.Redeem(tok, bind); err == nil {
						held = append(held, p)
					} else if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrInUse) {
						fail("Redeem: %v", err)
					}
				case op < 47 && len(reservedPorts) > 0:
					p := reservedPorts[len(reservedPorts)-1]
					reservedPorts = reservedPorts[:len(reservedPorts)-1]
					if err := a.RedeemPort(p, bind); err == nil {
						held = append(held, p)
					} else if !errors.Is(err, ErrNotReserved) && !errors.Is(err, ErrInUse) {
						fail("RedeemPort: %v", err)
					}
				case op < 52:
					p := uint16(lo + r.IntN(n))
					if err := a.AcquirePort(p, bind); err == nil {
						held = append(held, p)
					} else if !errors.Is(err, ErrInUse) {
						fail("AcquirePort: %v", err)
					}
				case op < 80 && len(held) > 0:
					release(r.IntN(len(held)), false)
				case op < 90 && len(held) > 0:
					release(r.IntN(len(held)), true)
				case op < 95:
					clk.advance(time.Duration(r.IntN(300)) * time.Millisecond)
				default:
					if s := a.Stats(); s.Held > n || s.Free > n || s.Free < 0 {
						fail("Stats out of bounds: %+v", s)
					}
				}
			}
			for len(held) > 0 {
				release(0, false)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if handedOut.Load() < workers*opsPerWork/10 {
		t.Fatalf("only %d ports handed out: the test exercised too little", handedOut.Load())
	}
	mustCheck(t, a)
	clk.advance(time.Hour)
	a.Release(lo) // not held: a no-op, but any call reclaims what expired
	if s := a.Stats(); s != (Stats{Capacity: n, Free: n}) {
		t.Fatalf("after everything was released and expired, Stats = %+v", s)
	}
	mustCheck(t, a)
	t.Logf("%d ports handed out", handedOut.Load())
}
