package relay

import "errors"

var (
	// ErrDraining refuses a new allocation while the relay drains.
	ErrDraining = errors.New("relay: draining, no new allocations")
	// ErrTCPRelayUnsupported refuses RFC 6062 TCP allocations (peers are reached over UDP only).
	ErrTCPRelayUnsupported = errors.New("relay: TCP relay allocations (RFC 6062) are not supported")
	errWorkerStopped       = errors.New("relay: worker stopped")
)
