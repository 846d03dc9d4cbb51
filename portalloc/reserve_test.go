package portalloc

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

func TestAcquireEven(t *testing.T) {
	t.Run("pair is even and odd, odd one reserved", func(t *testing.T) {
		for seed := range uint64(30) {
			a := mustNew(t, 20001, 20010, WithSeed(seed)) // odd min, even max: 20001 and 20010 have no pair
			var bound []uint16
			p, tok, err := a.AcquireEven(func(p uint16) error { bound = append(bound, p); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if p%2 != 0 || p < 20002 || p > 20008 || len(bound) != 1 || bound[0] != p {
				t.Fatalf("AcquireEven = %d (bound %v), want an even port 20002..20008 bound once", p, bound)
			}
			if tok == (Token{}) {
				t.Fatal("zero token")
			}
			if err := a.AcquirePort(p+1, nil); !errors.Is(err, ErrInUse) {
				t.Fatalf("AcquirePort(P+1) = %v, want ErrInUse", err)
			}
			if s := a.Stats(); s.Held != 1 || s.Reserved != 1 || s.Free != 8 {
				t.Fatalf("Stats = %+v", s)
			}
			mustCheck(t, a)
		}
	})
	t.Run("every pair reachable then exhausted", func(t *testing.T) {
		a := mustNew(t, 20000, 20009, WithSeed(5))
		seen := map[uint16]bool{}
		for range 5 {
			p, _, err := a.AcquireEven(nil)
			if err != nil || seen[p] {
				t.Fatalf("AcquireEven = %d, %v (seen %v)", p, err, seen)
			}
			seen[p] = true
		}
		if _, _, err := a.AcquireEven(nil); !errors.Is(err, ErrExhausted) {
			t.Fatalf("AcquireEven on a full range: %v", err)
		}
		mustCheck(t, a)
	})
	t.Run("skips pairs with a held half", func(t *testing.T) {
		a := mustNew(t, 20000, 20005, WithSeed(9))
		for _, p := range []uint16{20000, 20003} { // breaks pairs 20000 and 20002
			if err := a.AcquirePort(p, nil); err != nil {
				t.Fatal(err)
			}
		}
		if p, _, err := a.AcquireEven(nil); err != nil || p != 20004 {
			t.Fatalf("AcquireEven = %d, %v, want 20004", p, err)
		}
		if _, _, err := a.AcquireEven(nil); !errors.Is(err, ErrExhausted) {
			t.Fatalf("second AcquireEven: %v, want ErrExhausted (20001, 20002 are free but no pair)", err)
		}
		if p, err := a.Acquire(nil); err != nil || (p != 20001 && p != 20002) {
			t.Fatalf("Acquire = %d, %v", p, err)
		}
	})
	t.Run("quarantined pair used when no pair is free", func(t *testing.T) {
		clk := &fakeClock{}
		a := mustNew(t, 20000, 20003, WithClock(clk.now))
		for p := uint16(20000); p <= 20003; p++ {
			if err := a.AcquirePort(p, nil); err != nil {
				t.Fatal(err)
			}
		}
		a.Release(20003)
		a.ReleaseUnused(20001)
		clk.advance(time.Second)
		a.Release(20002) // pair 20002 is now quarantined+quarantined, pair 20000 held+free
		p, tok, err := a.AcquireEven(nil)
		if err != nil || p != 20002 {
			t.Fatalf("AcquireEven = %d, %v; want 20002", p, err)
		}
		if q, err := a.Redeem(tok, nil); err != nil || q != 20003 {
			t.Fatalf("Redeem = %d, %v; want 20003", q, err)
		}
		mustCheck(t, a)
	})
	t.Run("foreign even port skipped, its reservation undone", func(t *testing.T) {
		hit := false
		for seed := range uint64(64) {
			a := mustNew(t, 20000, 20003, WithSeed(seed))
			tried := false
			p, _, err := a.AcquireEven(func(p uint16) error {
				if p == 20000 {
					tried = true
					return syscall.EADDRINUSE
				}
				return nil
			})
			if err != nil || p != 20002 {
				t.Fatalf("AcquireEven = %d, %v; want 20002", p, err)
			}
			want := Stats{Capacity: 4, Free: 2, Held: 1, Reserved: 1}
			if tried {
				hit = true
				want = Stats{Capacity: 4, Free: 1, Held: 1, Reserved: 1, Foreign: 1}
			}
			if s := a.Stats(); s != want {
				t.Fatalf("Stats = %+v, want %+v", s, want)
			}
			mustCheck(t, a)
		}
		if !hit {
			t.Fatal("no seed drew the foreign pair first")
		}
	})
	t.Run("other bind error returns both ports", func(t *testing.T) {
		errBoom := errors.New("boom")
		a := mustNew(t, 20000, 20003)
		if _, _, err := a.AcquireEven(func(uint16) error { return errBoom }); !errors.Is(err, errBoom) {
			t.Fatalf("AcquireEven = %v, want boom", err)
		}
		if s := a.Stats(); s.Free != 4 {
			t.Fatalf("Stats = %+v; want all free", s)
		}
		mustCheck(t, a)
	})
}

func TestRedeem(t *testing.T) {
	const ttl = 30 * time.Second
	setup := func(t *testing.T) (*Allocator, *fakeClock, uint16, Token) {
		clk := &fakeClock{}
		a := mustNew(t, 20000, 20009, WithClock(clk.now), WithReservationTTL(ttl), WithSeed(4))
		p, tok, err := a.AcquireEven(nil)
		if err != nil {
			t.Fatal(err)
		}
		return a, clk, p, tok
	}
	t.Run("once only", func(t *testing.T) {
		a, clk, p, tok := setup(t)
		clk.advance(ttl - 1)
		q, err := a.Redeem(tok, nil)
		if err != nil || q != p+1 {
			t.Fatalf("Redeem = %d, %v; want %d", q, err, p+1)
		}
		if _, err := a.Redeem(tok, nil); !errors.Is(err, ErrBadToken) {
			t.Fatalf("second Redeem: %v, want ErrBadToken", err)
		}
		if err := a.RedeemPort(p+1, nil); !errors.Is(err, ErrNotReserved) {
			t.Fatalf("RedeemPort after Redeem: %v, want ErrNotReserved", err)
		}
		if s := a.Stats(); s.Held != 2 || s.Reserved != 0 {
			t.Fatalf("Stats = %+v", s)
		}
		mustCheck(t, a)
	})
	t.Run("expires after the TTL", func(t *testing.T) {
		a, clk, p, tok := setup(t)
		clk.advance(ttl)
		if _, err := a.Redeem(tok, nil); !errors.Is(err, ErrBadToken) {
			t.Fatalf("Redeem after TTL: %v, want ErrBadToken", err)
		}
		if s := a.Stats(); s.Reserved != 0 || s.Free != 9 {
			t.Fatalf("Stats = %+v; want P+1 back to free", s)
		}
		if err := a.AcquirePort(p+1, nil); err != nil {
			t.Fatalf("AcquirePort(P+1) after expiry: %v", err)
		}
		mustCheck(t, a)
	})
	t.Run("unknown token", func(t *testing.T) {
		a, _, _, tok := setup(t)
		tok[0] ^= 1
		if _, err := a.Redeem(tok, nil); !errors.Is(err, ErrBadToken) {
			t.Fatalf("Redeem(forged) = %v", err)
		}
		if _, err := a.Redeem(Token{}, nil); !errors.Is(err, ErrBadToken) {
			t.Fatalf("Redeem(zero) = %v", err)
		}
	})
	t.Run("by port", func(t *testing.T) {
		a, clk, p, tok := setup(t)
		for _, bad := range []uint16{p, p + 2, 19999} {
			if err := a.RedeemPort(bad, nil); !errors.Is(err, ErrNotReserved) {
				t.Fatalf("RedeemPort(%d) = %v, want ErrNotReserved", bad, err)
			}
		}
		clk.advance(ttl / 2)
		var bound uint16
		if err := a.RedeemPort(p+1, func(q uint16) error { bound = q; return nil }); err != nil || bound != p+1 {
			t.Fatalf("RedeemPort = %v (bound %d)", err, bound)
		}
		if _, err := a.Redeem(tok, nil); !errors.Is(err, ErrBadToken) {
			t.Fatalf("Redeem after RedeemPort: %v, want ErrBadToken", err)
		}
		mustCheck(t, a)
	})
	t.Run("by port after expiry", func(t *testing.T) {
		a, clk, p, _ := setup(t)
		clk.advance(ttl)
		if err := a.RedeemPort(p+1, nil); !errors.Is(err, ErrNotReserved) {
			t.Fatalf("RedeemPort after TTL = %v, want ErrNotReserved", err)
		}
	})
	t.Run("bind fails: reservation spent, port foreign", func(t *testing.T) {
		a, _, p, tok := setup(t)
		_, err := a.Redeem(tok, func(uint16) error { return syscall.EADDRINUSE })
		if !errors.Is(err, ErrInUse) || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("Redeem = %v, want ErrInUse and EADDRINUSE", err)
		}
		if _, err := a.Redeem(tok, nil); !errors.Is(err, ErrBadToken) {
			t.Fatalf("Redeem again = %v", err)
		}
		if s := a.Stats(); s.Foreign != 1 || s.Reserved != 0 {
			t.Fatalf("Stats = %+v", s)
		}
		if err := a.RedeemPort(p+1, nil); !errors.Is(err, ErrNotReserved) {
			t.Fatalf("RedeemPort of the foreign port = %v, want ErrNotReserved", err)
		}
		mustCheck(t, a)
	})
	t.Run("distinct tokens", func(t *testing.T) {
		a := mustNew(t, 20000, 20099)
		seen := map[Token]bool{}
		for range 50 {
			_, tok, err := a.AcquireEven(nil)
			if err != nil || seen[tok] {
				t.Fatalf("AcquireEven token %x, %v", tok, err)
			}
			seen[tok] = true
		}
	})
}
