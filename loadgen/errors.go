package loadgen

import "errors"

var (
	// ErrBadConfig is returned by Run when the Config is out of bounds.
	ErrBadConfig = errors.New("loadgen: bad config")
	// ErrTimeout is returned when the server does not answer a TURN request in time.
	ErrTimeout = errors.New("loadgen: transaction timed out")
	// ErrRejected is returned when the server answers a TURN request with an error.
	ErrRejected = errors.New("loadgen: request rejected")
	// errShort is returned by the wire parsers for truncated input.
	errShort = errors.New("loadgen: short packet")
	// errNotData is returned when a STUN message is not a Data indication.
	errNotData = errors.New("loadgen: not a data indication")
)
