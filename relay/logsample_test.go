//go:build linux

package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// recordHandler keeps every record logged through it.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.records = append(h.records, r.Clone())
	h.mu.Unlock()
	return nil
}

// count returns how many records have message msg, and the sum of their "suppressed".
func (h *recordHandler) count(msg string) (n int, suppressed int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message != msg {
			continue
		}
		n++
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "suppressed" {
				suppressed += a.Value.Int64()
			}
			return true
		})
	}
	return n, suppressed
}

// Per kind of line, logBurst lines per logInterval are logged; the first line after a gap
// reports how many were left out; other kinds have their own budget.
func TestLogSampler(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := newLogSampler(func() time.Time { return now })
	h := &recordHandler{}
	lg := slog.New(h)
	const flood = 1000
	for i := 0; i < flood; i++ {
		l.log(lg, slog.LevelInfo, "a", "line a", "i", i)
	}
	l.log(lg, slog.LevelInfo, "b", "line b")
	if n, _ := h.count("line a"); n != logBurst {
		t.Fatalf("%d of %d lines logged in one interval, want %d", n, flood, logBurst)
	}
	if n, _ := h.count("line b"); n != 1 {
		t.Fatalf("another kind of line was suppressed")
	}
	now = now.Add(logInterval - time.Nanosecond)
	l.log(lg, slog.LevelInfo, "a", "line a")
	if n, _ := h.count("line a"); n != logBurst {
		t.Fatal("a line logged before the interval ended")
	}
	now = now.Add(time.Nanosecond)
	l.log(lg, slog.LevelInfo, "a", "line a")
	if n, sup := h.count("line a"); n != logBurst+1 || sup != flood-logBurst+1 {
		t.Fatalf("after the interval: %d lines, %d reported suppressed; want %d and %d", n, sup, logBurst+1, flood-logBurst+1)
	}
}

// Authentication failures, which anyone can cause, are logged sampled: a flood of requests
// with an unknown username leaves logBurst lines (the metrics count every one).
func TestAuthFailureLogSampled(t *testing.T) {
	h := &recordHandler{}
	s := startServer(t, func(c *Config) {
		c.Logger = slog.New(h)
		c.UnauthorizedRate = -1
	})
	c := dialRaw(t, s.addrOf(UDP), "nobody", "x")
	_, err := c.transact(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
	var se *stunError
	if !errors.As(err, &se) || c.nonce.GetFrom(se.msg) != nil {
		t.Fatalf("Allocate without credentials: %v, want 401 with a NONCE", err)
	}
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	integrity := stun.NewLongTermIntegrity("nobody", "avedge", "x")
	const n = 100
	answered := sendBuilt(t, c.conn, c.server, n, func() []stun.Setter {
		return []stun.Setter{allocate, requestedTransportUDP, stun.NewUsername("nobody"), stun.NewRealm("avedge"), c.nonce, integrity, stun.Fingerprint}
	})
	if answered != n {
		t.Fatalf("%d of %d answered", answered, n)
	}
	// Each was refused (and logged, or not) before it was answered.
	if got, _ := h.count("authentication failed"); got == 0 || got > logBurst {
		t.Fatalf("%d 'authentication failed' lines for %d failures, want 1 to %d", got, n, logBurst)
	}
}
