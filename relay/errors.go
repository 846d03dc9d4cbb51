package relay

import "errors"

var (
	// ErrServerClosed is returned by Serve after Close or Shutdown.
	ErrServerClosed = errors.New("relay: server closed")
	// ErrDraining refuses a new allocation while the relay drains.
	ErrDraining = errors.New("relay: draining, no new allocations")
	// ErrNoListeners is returned by New when the configuration names no listener at all.
	ErrNoListeners = errors.New("relay: no listener configured")
	// ErrTCPRelayUnsupported refuses RFC 6062 TCP allocations (peers are reached over UDP only).
	ErrTCPRelayUnsupported = errors.New("relay: TCP relay allocations (RFC 6062) are not supported")
	errWorkerStopped       = errors.New("relay: worker stopped")
)
