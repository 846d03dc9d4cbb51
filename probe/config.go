package probe

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// DefaultTimeout bounds Gather, and Check's gathering and connecting.
const DefaultTimeout = 10 * time.Second

// Config configures Gather and Check. Every zero value is documented.
type Config struct {
	// URLs are the STUN and TURN servers (stun:, turn:, turns:). turn and
	// turns URLs without a username get Credentials. Required.
	URLs []*stun.URI
	// Credentials are used for TURN URLs that carry none.
	Credentials Credentials
	// NetworkTypes are the candidate network types gathered. Nil: udp4, udp6
	// and tcp4, as a browser would.
	NetworkTypes []ice.NetworkType
	// Timeout bounds gathering (and, for Check, connecting). Zero:
	// DefaultTimeout.
	Timeout time.Duration
	// IncludeLoopback gathers host candidates on loopback interfaces too
	// (pion/ice leaves them out by default).
	IncludeLoopback bool
	// InsecureSkipVerify skips certificate verification on turns: URLs.
	InsecureSkipVerify bool
	// Logger receives debug lines about each server; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Every duration in a
	// report is measured with it.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if len(c.URLs) == 0 {
		return c, ErrNoURLs
	}
	for _, u := range c.URLs {
		if u == nil {
			return c, ErrBadURL
		}
		if (u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS) && u.Username == "" && c.Credentials.Username == "" {
			return c, fmt.Errorf("probe: %s: %w", u, ErrNoCredentials)
		}
	}
	if c.NetworkTypes == nil {
		c.NetworkTypes = []ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6, ice.NetworkTypeTCP4}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// withCreds returns u with c's credentials when it is a TURN URL without any.
func withCreds(u *stun.URI, c Credentials) *stun.URI {
	v := *u
	if (v.Scheme == stun.SchemeTypeTURN || v.Scheme == stun.SchemeTypeTURNS) && v.Username == "" {
		v.Username, v.Password = c.Username, c.Password
	}
	return &v
}

func isTURN(u *stun.URI) bool {
	return u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS
}

// urlString is u as printed in reports (String never includes credentials).
func urlString(u *stun.URI) string { return u.String() }
