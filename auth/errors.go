package auth

import "errors"

// Sentinel errors returned by Validator.Lookup and the loaders. Callers branch
// on them with errors.Is; Reason maps them to metric labels.
var (
	// ErrExpired: the credential's expiry (plus the tolerated skew) has passed.
	ErrExpired = errors.New("auth: credential expired")
	// ErrMalformed: the username is neither a static user, a TURN REST username
	// nor a keyed (MRAS) username, or it breaks their grammar.
	ErrMalformed = errors.New("auth: malformed username")
	// ErrUnknownKey: the keyed username names a key id that is not live, or a
	// REST username arrived while no secret is configured.
	ErrUnknownKey = errors.New("auth: unknown key id")
	// ErrUnknownUser: the username is not a configured static user.
	ErrUnknownUser = errors.New("auth: unknown user")
)

// Reason labels. Each constant doubles as the value of a metric label, so the
// set is fixed and small.
const (
	ReasonExpired     = "expired"
	ReasonMalformed   = "malformed"
	ReasonUnknownKey  = "unknown_key"
	ReasonUnknownUser = "unknown_user"
	ReasonOther       = "other"
)

// Reason maps an error from Lookup to a bounded metric label: "expired",
// "malformed", "unknown_key", "unknown_user", or "other" for anything else
// (including nil).
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrExpired):
		return ReasonExpired
	case errors.Is(err, ErrMalformed):
		return ReasonMalformed
	case errors.Is(err, ErrUnknownKey):
		return ReasonUnknownKey
	case errors.Is(err, ErrUnknownUser):
		return ReasonUnknownUser
	default:
		return ReasonOther
	}
}

// Errors from the secrets and users loaders.
var (
	ErrBadKeyID       = errors.New("auth: key id must match [A-Za-z0-9_-]{1,16}")
	ErrDuplicateKeyID = errors.New("auth: duplicate key id")
	ErrEmptySecret    = errors.New("auth: empty secret")
	ErrNoSecrets      = errors.New("auth: no secrets")
	ErrBadLine        = errors.New("auth: malformed line")
	ErrFileTooLarge   = errors.New("auth: file too large")
)

// Errors from the MRAS request parser.
var (
	ErrMRASMalformed = errors.New("auth: MRAS request malformed")
	ErrMRASTooLarge  = errors.New("auth: MRAS request too large")
	ErrMRASVersion   = errors.New("auth: MRAS version mismatch")
)

// Errors from the credential service.
var (
	ErrNoKeyring    = errors.New("auth: no keyring")
	ErrNoAPIKeys    = errors.New("auth: no API key configured and anonymous access not allowed")
	ErrBadAPIKey    = errors.New("auth: empty API key or API key with white space")
	ErrBadRelay     = errors.New("auth: bad relay")
	ErrBadDuration  = errors.New("auth: bad duration")
	ErrUnauthorized = errors.New("auth: missing or wrong API key")
	// ErrAnonymousNotLoopback: anonymous mode asked for on an address that is not loopback.
	ErrAnonymousNotLoopback = errors.New("auth: anonymous credential service on a non-loopback address")
	// ErrCertExpired: the TLS certificate's NotAfter has passed.
	ErrCertExpired = errors.New("auth: certificate expired")
)
