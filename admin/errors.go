package admin

import "errors"

var (
	// ErrNoBackend: Config.Backend is nil.
	ErrNoBackend = errors.New("admin: no backend")
	// ErrNoAPIKeys: the handler would accept every caller on a network listener.
	ErrNoAPIKeys = errors.New("admin: no API key")
	// ErrBadAPIKey: an API key is empty or contains white space.
	ErrBadAPIKey = errors.New("admin: API key empty or with white space")
	// ErrBadRevocations: the revocations file does not parse.
	ErrBadRevocations = errors.New("admin: revocations file does not parse")
)
