//go:build linux

package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogger routes pion's logging to slog at Debug (pion logs per packet at Info and Debug
// in places; we never want that at our Info level). Its warnings and errors, which a peer's
// or a client's packets can cause (a failed send, a failed TLS handshake), are sampled per
// message or format (logsample.go).
type pionLogger struct {
	log    *slog.Logger
	sample *logSampler // nil: not sampled
}

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLeveled{log: p.log.With("pion", scope), sample: p.sample}
}

type pionLeveled struct {
	log    *slog.Logger
	sample *logSampler
}

func (l pionLeveled) Trace(msg string)                  {}
func (l pionLeveled) Tracef(format string, args ...any) {}
func (l pionLeveled) Debug(msg string)                  { l.log.Debug(msg) }
func (l pionLeveled) Debugf(format string, args ...any) { l.dbg(format, args...) }
func (l pionLeveled) Info(msg string)                   { l.log.Debug(msg) }
func (l pionLeveled) Infof(format string, args ...any)  { l.dbg(format, args...) }
func (l pionLeveled) Warn(msg string)                   { l.warn(msg, "%s", msg) }
func (l pionLeveled) Warnf(format string, args ...any)  { l.warn(format, format, args...) }
func (l pionLeveled) Error(msg string)                  { l.warn(msg, "%s", msg) }
func (l pionLeveled) Errorf(format string, args ...any) { l.warn(format, format, args...) }

// warn logs format at Warn, sampled by key (pion's message or format string: one per call
// site); the line is formatted only when it is logged.
func (l pionLeveled) warn(key, format string, args ...any) {
	ok, extra := true, []any(nil)
	if l.sample != nil {
		ok, extra = l.sample.admit(l.log, slog.LevelWarn, "pion\x00"+key)
	}
	if !ok {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	l.log.Warn(msg, extra...)
}

func (l pionLeveled) dbg(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}
