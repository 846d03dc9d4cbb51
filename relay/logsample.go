//go:build linux

package relay

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log lines that input from the network causes — an authentication failure, a peer refused
// by policy, pion's complaint about a packet — would let anyone fill the disk at the rate
// they send. The metrics count every such event; the log keeps a sample: per kind of line,
// the first logBurst of every logInterval, and the next line logged after a gap says how many
// were left out ("suppressed").
const (
	logBurst    = 10
	logInterval = 10 * time.Second
	// maxLogKeys bounds the kinds tracked; keys are constants (reasons, pion's format
	// strings), so it is never reached unless a caller passes a variable key, and then the
	// excess share one budget.
	maxLogKeys = 256
)

// logSampler decides which lines of each kind are logged. The zero value is not usable: see
// newLogSampler.
type logSampler struct {
	now func() time.Time // Static after construction.

	mu      sync.Mutex
	windows map[string]*logWindow // by key. Guarded by mu.
}

type logWindow struct {
	start      time.Time
	logged     int // in the window starting at start
	suppressed int // since the last line logged
}

func newLogSampler(now func() time.Time) *logSampler {
	if now == nil {
		now = time.Now
	}
	return &logSampler{now: now, windows: map[string]*logWindow{}}
}

// allow reports whether a line of kind key is logged now and, if so, how many lines of that
// kind were left out since the last one logged.
func (l *logSampler) allow(key string) (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w, found := l.windows[key]
	if !found {
		if len(l.windows) >= maxLogKeys {
			key = ""
			w = l.windows[key]
		}
		if w == nil {
			w = &logWindow{start: now}
			l.windows[key] = w
		}
	}
	if now.Sub(w.start) >= logInterval {
		w.start, w.logged = now, 0
	}
	if w.logged >= logBurst {
		w.suppressed++
		return false, 0
	}
	w.logged++
	suppressed, w.suppressed = w.suppressed, 0
	return true, suppressed
}

// admit reports whether a line of kind key at level is logged to lg now, and the attributes
// to add to it (how many were left out before it).
func (l *logSampler) admit(lg *slog.Logger, level slog.Level, key string) (bool, []any) {
	if !lg.Enabled(context.Background(), level) {
		return false, nil
	}
	ok, suppressed := l.allow(key)
	if !ok || suppressed == 0 {
		return ok, nil
	}
	return true, []any{"suppressed", suppressed}
}

// log logs msg at level to lg unless too many lines of kind key were logged lately.
func (l *logSampler) log(lg *slog.Logger, level slog.Level, key, msg string, args ...any) {
	if ok, extra := l.admit(lg, level, key); ok {
		lg.Log(context.Background(), level, msg, append(args, extra...)...)
	}
}

// logInput logs at Info a line that input from the network caused, sampled per msg and
// reason (a constant: a metric label).
func (s *Server) logInput(reason, msg string, args ...any) {
	s.logs.log(s.log, slog.LevelInfo, msg+"\x00"+reason, msg, append(args, "reason", reason)...)
}
