package probe

import "errors"

// Sentinels a caller branches on (cmd/avedge-probe maps them to exit codes).
var (
	// ErrNoRelayCandidate: no TURN server gave a relay candidate (or, with
	// only stun: URLs, no STUN server gave a server-reflexive one).
	ErrNoRelayCandidate = errors.New("probe: no relay candidate")
	// ErrAuthRefused: the credential service refused the API key or identity,
	// or every TURN server answered 401 Unauthorized.
	ErrAuthRefused = errors.New("probe: auth refused")
	// ErrConnectivity: the relay-only check did not connect, lost every
	// packet, or received bytes other than those sent.
	ErrConnectivity = errors.New("probe: connectivity failed")
)

// Configuration and credential-service errors.
var (
	ErrNoURLs         = errors.New("probe: no STUN or TURN URL")
	ErrBadURL         = errors.New("probe: bad STUN/TURN URL")
	ErrNoCredentials  = errors.New("probe: turn URL without username and password")
	ErrServiceAnswer  = errors.New("probe: malformed credential service answer")
	ErrServiceFailed  = errors.New("probe: credential service failed")
	ErrAnswerTooLarge = errors.New("probe: credential service answer too large")
)
