package relay

import "errors"

var (
	// ErrDraining refuses a new allocation while the relay drains.
	ErrDraining = errors.New("relay: draining, no new allocations")
	// ErrTCPRelayDisabled refuses RFC 6062 TCP allocations on a relay configured with
	// NoTCPRelay.
	ErrTCPRelayDisabled = errors.New("relay: TCP relay allocations (RFC 6062) are disabled")
	errWorkerStopped    = errors.New("relay: worker stopped")
	errNoTCPRelay       = errors.New("relay: Connect on an allocation without a TCP relayed address")
	errPeerRefused      = errors.New("relay: peer refused by policy")
	errTCPRelayLimit    = errors.New("relay: TCP relay connection limit reached")
)
