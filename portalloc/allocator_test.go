package portalloc

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func mustNew(t testing.TB, min, max uint16, opts ...Option) *Allocator {
	t.Helper()
	a, err := New(min, max, opts...)
	if err != nil {
		t.Fatalf("New(%d, %d): %v", min, max, err)
	}
	return a
}

func mustCheck(t testing.TB, a *Allocator) {
	t.Helper()
	if err := a.check(); err != nil {
		t.Fatalf("invariant broken: %v", err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		min, max uint16
		opts     []Option
		wantErr  string // substring; "" means success
	}{
		{name: "edge default", min: 50000, max: 59999},
		{name: "single port", min: 1024, max: 1024},
		{name: "whole unprivileged space", min: 1024, max: 65535},
		{name: "min above max", min: 50001, max: 50000, wantErr: "min-port 50001 is above max-port 50000"},
		{name: "well-known min", min: 1023, max: 2000, wantErr: "min-port 1023 is a well-known port"},
		{name: "zero min", min: 0, max: 0, wantErr: "below 1024"},
		{name: "negative quarantine", min: 50000, max: 50001, opts: []Option{WithQuarantine(-time.Second)}, wantErr: "quarantine -1s is negative"},
		{name: "quarantine disabled", min: 50000, max: 50001, opts: []Option{WithQuarantine(0)}},
		{name: "zero reservation TTL", min: 50000, max: 50001, opts: []Option{WithReservationTTL(0)}, wantErr: "reservation TTL 0s must be positive"},
		{name: "zero foreign cooldown", min: 50000, max: 50001, opts: []Option{WithForeignCooldown(0)}, wantErr: "cooldown 0s must be positive"},
		{name: "nil clock", min: 50000, max: 50001, opts: []Option{WithClock(nil)}, wantErr: "clock is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.min, tt.max, tt.opts...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "portalloc: ") {
					t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if lo, hi := a.Range(); lo != tt.min || hi != tt.max {
				t.Errorf("Range() = %d, %d", lo, hi)
			}
			want := Stats{Capacity: int(tt.max-tt.min) + 1, Free: int(tt.max-tt.min) + 1}
			if s := a.Stats(); s != want {
				t.Errorf("Stats() = %+v, want %+v", s, want)
			}
			mustCheck(t, a)
		})
	}
}

func TestAcquireEveryPortThenExhausted(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			const min, max = 20000, 20015
			a := mustNew(t, min, max, WithSeed(seed))
			got := map[uint16]bool{}
			for range max - min + 1 {
				p, err := a.Acquire(nil)
				if err != nil {
					t.Fatalf("Acquire: %v", err)
				}
				if p < min || p > max || got[p] {
					t.Fatalf("Acquire = %d: outside range or handed out twice", p)
				}
				got[p] = true
			}
			if _, err := a.Acquire(nil); !errors.Is(err, ErrExhausted) {
				t.Fatalf("Acquire on a full range: %v, want ErrExhausted", err)
			}
			if _, _, err := a.AcquireEven(nil); !errors.Is(err, ErrExhausted) {
				t.Fatalf("AcquireEven on a full range: %v, want ErrExhausted", err)
			}
			if s := a.Stats(); s.Held != 16 || s.Free != 0 {
				t.Fatalf("Stats = %+v", s)
			}
			a.Release(20007)
			p, err := a.Acquire(nil)
			if err != nil || p != 20007 {
				t.Fatalf("Acquire after Release(20007) = %d, %v; want 20007 from quarantine", p, err)
			}
			mustCheck(t, a)
		})
	}
}

func TestReleaseNotHeldIsNoop(t *testing.T) {
	clk := &fakeClock{}
	a := mustNew(t, 20000, 20003, WithClock(clk.now), WithSeed(7))
	p, err := a.Acquire(nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func()
		want Stats
	}{
		{"release out of range", func() { a.Release(19999); a.ReleaseUnused(20004) }, Stats{Capacity: 4, Free: 3, Held: 1}},
		{"release a free port", func() { a.Release(otherPort(p)); a.ReleaseUnused(otherPort(p)) }, Stats{Capacity: 4, Free: 3, Held: 1}},
		{"release", func() { a.Release(p) }, Stats{Capacity: 4, Free: 3, Quarantined: 1}},
		{"double release", func() { a.Release(p) }, Stats{Capacity: 4, Free: 3, Quarantined: 1}},
		{"release unused of a quarantined port", func() { a.ReleaseUnused(p) }, Stats{Capacity: 4, Free: 3, Quarantined: 1}},
		{"quarantine over", func() { clk.advance(DefaultQuarantine); a.Release(p) }, Stats{Capacity: 4, Free: 4}},
		{"release after reclaim", func() { a.Release(p) }, Stats{Capacity: 4, Free: 4}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do()
			if got := a.Stats(); got != s.want {
				t.Fatalf("Stats = %+v, want %+v", got, s.want)
			}
			mustCheck(t, a)
		})
	}
	// Four distinct ports must still come out, proving no duplicate entered
	// the free set.
	seen := map[uint16]bool{}
	for range 4 {
		q, err := a.Acquire(nil)
		if err != nil || seen[q] {
			t.Fatalf("Acquire = %d, %v (seen %v)", q, err, seen)
		}
		seen[q] = true
	}
	if _, err := a.Acquire(nil); !errors.Is(err, ErrExhausted) {
		t.Fatalf("fifth Acquire: %v, want ErrExhausted", err)
	}
}

func otherPort(p uint16) uint16 {
	if p == 20000 {
		return 20001
	}
	return 20000
}

func TestQuarantine(t *testing.T) {
	t.Run("free ports are preferred", func(t *testing.T) {
		for seed := range uint64(20) {
			clk := &fakeClock{}
			a := mustNew(t, 20000, 20001, WithClock(clk.now), WithSeed(seed))
			p1, _ := a.Acquire(nil)
			p2, _ := a.Acquire(nil)
			a.Release(p1)
			a.ReleaseUnused(p2)
			if got, err := a.Acquire(nil); err != nil || got != p2 {
				t.Fatalf("seed %d: Acquire = %d, %v; want the free port %d, not quarantined %d", seed, got, err, p2, p1)
			}
		}
	})
	t.Run("oldest quarantined first when nothing is free", func(t *testing.T) {
		clk := &fakeClock{}
		a := mustNew(t, 20000, 20002, WithClock(clk.now), WithSeed(1))
		var ports [3]uint16
		for i := range ports {
			ports[i], _ = a.Acquire(nil)
		}
		a.Release(ports[2])
		clk.advance(time.Second)
		a.Release(ports[0])
		clk.advance(time.Second)
		a.Release(ports[1])
		for _, want := range []uint16{ports[2], ports[0], ports[1]} {
			if got, err := a.Acquire(nil); err != nil || got != want {
				t.Fatalf("Acquire = %d, %v; want %d", got, err, want)
			}
		}
		mustCheck(t, a)
	})
	t.Run("expires with the injected clock", func(t *testing.T) {
		clk := &fakeClock{}
		a := mustNew(t, 20000, 20009, WithClock(clk.now), WithQuarantine(5*time.Second))
		p, _ := a.Acquire(nil)
		a.Release(p)
		clk.advance(5*time.Second - 1)
		if err := a.AcquirePort(p, nil); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "quarantined") {
			t.Fatalf("AcquirePort during quarantine: %v, want ErrInUse (quarantined)", err)
		}
		if s := a.Stats(); s.Quarantined != 1 || s.Free != 9 {
			t.Fatalf("Stats during quarantine = %+v", s)
		}
		clk.advance(1)
		if err := a.AcquirePort(p, nil); err != nil {
			t.Fatalf("AcquirePort after quarantine: %v", err)
		}
		mustCheck(t, a)
	})
	t.Run("zero disables", func(t *testing.T) {
		clk := &fakeClock{}
		a := mustNew(t, 20000, 20009, WithClock(clk.now), WithQuarantine(0))
		p, _ := a.Acquire(nil)
		a.Release(p)
		if s := a.Stats(); s.Quarantined != 0 || s.Free != 10 {
			t.Fatalf("Stats = %+v, want all free", s)
		}
		if err := a.AcquirePort(p, nil); err != nil {
			t.Fatalf("AcquirePort right after Release: %v", err)
		}
	})
}

func TestAcquirePort(t *testing.T) {
	clk := &fakeClock{}
	a := mustNew(t, 20000, 20009, WithClock(clk.now))
	if err := a.AcquirePort(20004, nil); err != nil {
		t.Fatalf("AcquirePort(20004): %v", err)
	}
	_, tok, err := a.AcquireEven(nil)
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	reservedPort := a.port(a.byToken[tok])
	a.mu.Unlock()
	tests := []struct {
		name    string
		port    uint16
		wantErr []error
	}{
		{"held", 20004, []error{ErrInUse}},
		{"reserved", reservedPort, []error{ErrInUse}},
		{"below range", 19999, []error{ErrInUse, ErrOutOfRange}},
		{"above range", 20010, []error{ErrInUse, ErrOutOfRange}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.AcquirePort(tt.port, nil)
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("AcquirePort(%d) = %v, want %v", tt.port, err, want)
				}
			}
		})
	}
	mustCheck(t, a)
}

func TestBindErrors(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name        string
		err         error
		wantForeign bool
	}{
		{"address in use", &wrapErr{syscall.EADDRINUSE}, true},
		{"permission denied", fmt.Errorf("listen: %w", syscall.EACCES), true},
		{"other error", errBoom, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{}
			a := mustNew(t, 20000, 20003, WithClock(clk.now), WithSeed(3), WithForeignCooldown(time.Minute))
			const bad = 20002
			var tried []uint16
			bind := func(p uint16) error {
				tried = append(tried, p)
				if p == bad {
					return tt.err
				}
				return nil
			}
			// Hold every port; the bad one must be skipped or reported.
			var got []uint16
			for range 3 {
				p, err := a.Acquire(bind)
				if err != nil {
					if tt.wantForeign {
						t.Fatalf("Acquire: %v", err)
					}
					if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "portalloc: bind 20002") {
						t.Fatalf("Acquire error = %v, want wrapped boom for port 20002", err)
					}
					continue
				}
				if p == bad {
					t.Fatalf("Acquire handed out port %d whose bind failed", p)
				}
				got = append(got, p)
			}
			if tt.wantForeign {
				if _, err := a.Acquire(bind); !errors.Is(err, ErrExhausted) {
					t.Fatalf("Acquire with only a foreign port left: %v, want ErrExhausted", err)
				}
				if s := a.Stats(); len(got) != 3 || s.Foreign != 1 || s.Held != 3 {
					t.Fatalf("got %v, Stats %+v; want 3 held, 1 foreign", got, s)
				}
				err := a.AcquirePort(bad, bind)
				if !errors.Is(err, ErrInUse) {
					t.Fatalf("AcquirePort(foreign): %v, want ErrInUse", err)
				}
				// After the cooldown the port is tried again.
				clk.advance(time.Minute)
				tt.err = nil
				if p, err := a.Acquire(bind); err != nil || p != bad {
					t.Fatalf("Acquire after cooldown = %d, %v; want %d", p, err, bad)
				}
			} else {
				for try := 0; len(got) < 3 && try < 100; try++ { // the bad port went back to free: draw until 3 good ones are held
					p, err := a.Acquire(bind)
					if err == nil {
						got = append(got, p)
					} else if !errors.Is(err, errBoom) {
						t.Fatalf("Acquire: %v", err)
					}
				}
				if s := a.Stats(); s.Free != 1 || s.Foreign != 0 || s.Held != 3 {
					t.Fatalf("got %v, Stats %+v; want 3 held, 1 back to free", got, s)
				}
			}
			if !slices.Contains(tried, bad) {
				t.Fatalf("bind was never asked for port %d (tried %v)", bad, tried)
			}
			mustCheck(t, a)
		})
	}
}

// wrapErr wraps an error without fmt, like *net.OpError does.
type wrapErr struct{ err error }

func (e *wrapErr) Error() string { return "bind: " + e.err.Error() }
func (e *wrapErr) Unwrap() error { return e.err }

func TestAcquireTriesEveryPortBeforeExhausted(t *testing.T) {
	a := mustNew(t, 20000, 20099, WithSeed(11))
	tried := map[uint16]int{}
	_, err := a.Acquire(func(p uint16) error {
		tried[p]++
		return syscall.EADDRINUSE
	})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("Acquire = %v, want ErrExhausted", err)
	}
	if len(tried) != 100 {
		t.Fatalf("tried %d distinct ports, want all 100", len(tried))
	}
	for p, n := range tried {
		if n != 1 {
			t.Fatalf("port %d tried %d times", p, n)
		}
	}
	if s := a.Stats(); s.Foreign != 100 {
		t.Fatalf("Stats = %+v", s)
	}
	mustCheck(t, a)
}

func TestReleaseDuringBindIsIgnored(t *testing.T) {
	a := mustNew(t, 20000, 20000)
	_, err := a.Acquire(func(p uint16) error {
		a.Release(p) // not held yet: must be a no-op, not a corruption
		a.ReleaseUnused(p)
		if s := a.Stats(); s.Held != 1 {
			t.Errorf("Stats inside bind = %+v", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Held != 1 || s.Free != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	mustCheck(t, a)
}

func TestAcquireReleaseZeroAllocs(t *testing.T) {
	a := mustNew(t, 50000, 59999)
	bind := func(uint16) error { return nil }
	allocs := testing.AllocsPerRun(1000, func() {
		p, err := a.Acquire(bind)
		if err != nil {
			t.Fatal(err)
		}
		a.Release(p)
	})
	if allocs != 0 {
		t.Fatalf("Acquire+Release allocates %v times per pair", allocs)
	}
}

func TestForeignPortIsLogged(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	a := mustNew(t, 20000, 20000, WithLogger(log))
	if _, err := a.Acquire(func(uint16) error { return syscall.EADDRINUSE }); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Acquire = %v", err)
	}
	out := buf.String()
	for _, want := range []string{"level=WARN", "held by another process", "port=20000", "retry_after=1m0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("%d log lines, want 1", n)
	}
}
