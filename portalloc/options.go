package portalloc

import (
	"log/slog"
	"time"
)

// Defaults for the Options.
const (
	// DefaultQuarantine is how long a released port rests before it is
	// handed out again, so that late packets from the old peer cannot
	// reach a new allocation.
	DefaultQuarantine = 10 * time.Second

	// DefaultReservationTTL is how long the odd port of an EVEN-PORT pair
	// stays reserved for its RESERVATION-TOKEN (RFC 8656: at least 30 s).
	DefaultReservationTTL = 30 * time.Second

	// DefaultForeignCooldown is how long a port that the kernel refused
	// (held by another process) is set aside before it is tried again.
	DefaultForeignCooldown = time.Minute
)

// Option configures an Allocator.
type Option func(*options)

type options struct {
	quarantine      time.Duration
	reservationTTL  time.Duration
	foreignCooldown time.Duration
	now             func() time.Time
	seed            uint64
	seeded          bool
	log             *slog.Logger
}

func defaultOptions() options {
	return options{
		quarantine:      DefaultQuarantine,
		reservationTTL:  DefaultReservationTTL,
		foreignCooldown: DefaultForeignCooldown,
		now:             time.Now,
		log:             slog.New(slog.DiscardHandler),
	}
}

// WithQuarantine sets how long a port given back with Release rests before it
// is handed out again (default 10 s). 0 disables the quarantine; negative
// durations make New fail.
func WithQuarantine(d time.Duration) Option {
	return func(o *options) { o.quarantine = d }
}

// WithReservationTTL sets how long the odd port of an AcquireEven pair stays
// reserved (default 30 s, RFC 8656 §7.2). It must be positive.
func WithReservationTTL(d time.Duration) Option {
	return func(o *options) { o.reservationTTL = d }
}

// WithForeignCooldown sets how long a port that bind found held by another
// process (EADDRINUSE, EACCES) is set aside before it is tried again
// (default 1 min). It must be positive.
func WithForeignCooldown(d time.Duration) Option {
	return func(o *options) { o.foreignCooldown = d }
}

// WithClock sets the clock used for quarantine, reservation and cooldown
// expiry (default time.Now). Tests inject a fake clock. nil makes New fail.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithSeed makes the random draw deterministic, for tests. By default the
// generator is seeded from crypto/rand. Reservation tokens always come from
// crypto/rand, whatever the seed.
func WithSeed(seed uint64) Option {
	return func(o *options) { o.seed, o.seeded = seed, true }
}

// WithLogger sets the logger (default: discard). The Allocator logs only
// when it finds a port held by another process — at most once per port per
// cooldown.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}
