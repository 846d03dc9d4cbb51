//go:build linux

package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogger routes pion's logging to slog at Debug (pion logs per packet at Info and Debug
// in places; we never want that at our Info level).
type pionLogger struct{ log *slog.Logger }

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLeveled{log: p.log.With("pion", scope)}
}

type pionLeveled struct{ log *slog.Logger }

func (l pionLeveled) Trace(msg string)                  {}
func (l pionLeveled) Tracef(format string, args ...any) {}
func (l pionLeveled) Debug(msg string)                  { l.log.Debug(msg) }
func (l pionLeveled) Debugf(format string, args ...any) { l.dbg(format, args...) }
func (l pionLeveled) Info(msg string)                   { l.log.Debug(msg) }
func (l pionLeveled) Infof(format string, args ...any)  { l.dbg(format, args...) }
func (l pionLeveled) Warn(msg string)                   { l.log.Warn(msg) }
func (l pionLeveled) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l pionLeveled) Error(msg string)                  { l.log.Warn(msg) }
func (l pionLeveled) Errorf(format string, args ...any) { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l pionLeveled) dbg(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}
