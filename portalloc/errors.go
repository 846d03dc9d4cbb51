package portalloc

import "errors"

var (
	// ErrExhausted means no port of the range could be handed out: every
	// free (and quarantined) port was tried. The relay answers TURN 508
	// (Insufficient Capacity).
	ErrExhausted = errors.New("portalloc: no free port in range")

	// ErrInUse means AcquirePort asked for a port that is held, reserved,
	// quarantined or held by another process. Bind failures with
	// EADDRINUSE or EACCES are also wrapped with ErrInUse.
	ErrInUse = errors.New("portalloc: port not free")

	// ErrBadToken means Redeem got a token that was never issued, has
	// expired or was already redeemed.
	ErrBadToken = errors.New("portalloc: unknown, expired or used reservation token")

	// ErrNotReserved means RedeemPort asked for a port that is not
	// currently reserved.
	ErrNotReserved = errors.New("portalloc: port is not reserved")

	// ErrOutOfRange means a port number outside the Allocator's range was
	// passed to AcquirePort or RedeemPort. Such errors also wrap the
	// operation's own sentinel (ErrInUse or ErrNotReserved).
	ErrOutOfRange = errors.New("portalloc: port outside range")
)
