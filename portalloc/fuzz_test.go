package portalloc

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// FuzzOps drives one Allocator with an arbitrary sequence of operations
// decoded from the input, and after every step checks the internal
// invariants and a model of which ports the caller holds: no port is handed
// out twice while held, and Stats.Held always matches.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 2, 0, 5, 3, 7, 200, 0, 0})
	f.Add([]byte{1, 0, 1, 0, 1, 0, 7, 255, 7, 255, 2, 0, 3, 5})
	f.Add([]byte{0, 1, 0, 1, 0, 2, 4, 4, 6, 5, 5, 5, 8, 0, 9, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		const lo, n = 20001, 9 // odd first port: 20001 has no pair
		if len(data) > 4096 {
			data = data[:4096]
		}
		clk := &fakeClock{}
		a, err := New(lo, lo+n-1, WithClock(clk.now), WithSeed(1),
			WithQuarantine(time.Second), WithReservationTTL(3*time.Second), WithForeignCooldown(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		held := map[uint16]bool{}
		var toks []Token
		errBoom := errors.New("boom")
		var mode byte
		bind := func(p uint16) error {
			if held[p] {
				t.Fatalf("bind(%d) for a port the caller holds", p)
			}
			switch mode % 4 {
			case 1:
				return syscall.EADDRINUSE
			case 2:
				return errBoom
			}
			return nil
		}
		take := func(p uint16, err error) {
			if err != nil {
				return
			}
			if held[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			held[p] = true
		}
		for k := 0; k+1 < len(data); k += 2 {
			op, arg := data[k]%10, data[k+1]
			mode = arg
			port := uint16(lo - 1 + int(arg)%(n+2)) // includes one port either side of the range
			switch op {
			case 0:
				take(a.Acquire(bind))
			case 1:
				p, tok, err := a.AcquireEven(bind)
				take(p, err)
				if err == nil {
					toks = append(toks, tok)
				}
			case 2:
				if len(toks) > 0 {
					tok := toks[int(arg)%len(toks)]
					take(a.Redeem(tok, bind))
				}
			case 3:
				take(port, a.RedeemPort(port, bind))
			case 4:
				take(port, a.AcquirePort(port, bind))
			case 5:
				delete(held, port)
				a.Release(port)
			case 6:
				delete(held, port)
				a.ReleaseUnused(port)
			case 7:
				clk.advance(time.Duration(arg) * 20 * time.Millisecond)
			case 8:
				if _, err := a.Redeem(Token{arg}, bind); !errors.Is(err, ErrBadToken) {
					t.Fatalf("Redeem(forged) = %v", err)
				}
			case 9:
				s := a.Stats()
				if sum := s.Free + s.Held + s.Reserved + s.Quarantined + s.Foreign; sum != n {
					t.Fatalf("Stats %+v sum to %d", s, sum)
				}
			}
			if s := a.Stats(); s.Held != len(held) {
				t.Fatalf("step %d: Stats.Held = %d, caller holds %d", k/2, s.Held, len(held))
			}
			if err := a.check(); err != nil {
				t.Fatalf("step %d (op %d arg %d): %v", k/2, op, arg, err)
			}
		}
	})
}
