package probe

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/logging"
	"github.com/pion/transport/v5"
)

// pionLog routes pion's logs to slog at debug level: for a probe, pion's
// warnings ("failed to allocate…") are expected outcomes, reported properly
// in the Report, not log noise.
type pionLog struct {
	log   *slog.Logger
	scope string
}

func (f pionLog) NewLogger(scope string) logging.LeveledLogger {
	return pionLog{log: f.log, scope: scope}
}

func (l pionLog) emit(msg string) {
	l.log.LogAttrs(context.Background(), slog.LevelDebug, msg, slog.String("pion", l.scope))
}
func (l pionLog) Trace(string)                   {}
func (l pionLog) Tracef(string, ...any)          {}
func (l pionLog) Debug(msg string)               { l.emit(msg) }
func (l pionLog) Debugf(format string, a ...any) { l.emit(fmt.Sprintf(format, a...)) }
func (l pionLog) Info(msg string)                { l.emit(msg) }
func (l pionLog) Infof(format string, a ...any)  { l.emit(fmt.Sprintf(format, a...)) }
func (l pionLog) Warn(msg string)                { l.emit(msg) }
func (l pionLog) Warnf(format string, a ...any)  { l.emit(fmt.Sprintf(format, a...)) }
func (l pionLog) Error(msg string)               { l.emit(msg) }
func (l pionLog) Errorf(format string, a ...any) { l.emit(fmt.Sprintf(format, a...)) }

// boundedNet is the standard network with TCP dials bound by ctx: pion/ice
// dials TURN-over-TCP servers without a deadline, and a black-holed server
// would otherwise hold the agent's Close for the kernel's SYN timeout.
type boundedNet struct {
	transport.Net
	ctx context.Context
}

func (n boundedNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	var d net.Dialer
	if laddr != nil {
		d.LocalAddr = laddr
	}
	c, err := d.DialContext(n.ctx, network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil //nolint:forcetypeassert // a TCP dial yields a *net.TCPConn
}
