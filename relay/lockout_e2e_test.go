//go:build linux

package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// authFailures reads avedge_auth_failures_total{reason} from reg.
func authFailures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "avedge_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no avedge_auth_failures_total{reason=%q}", reason)
	return 0
}

// A static user's password is guessed at no more than StaticUserFailures tries per
// StaticUserLockout: after that many wrong passwords the user is refused (401, counted as
// locked_out) even with the right one, from any address; other users are not affected.
func TestStaticUserLockout(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	const failures = 3
	s := startServer(t, func(c *Config) {
		c.Metrics = m
		c.StaticUserFailures = failures
		c.Validator = auth.NewValidator(auth.ValidatorConfig{Users: map[string]string{"alice": "alice-pw", "bob": "bob-pw"}})
	})
	for i := 0; i < failures; i++ {
		guesser := dialRaw(t, s.addrOf(UDP), "alice", "guess")
		if err := guesser.allocate(); errorCode(err) != 401 {
			t.Fatalf("guess %d: %v, want 401", i, err)
		}
	}
	// The guess that reaches the limit is the first refusal counted as locked_out.
	if got := authFailures(t, reg, metrics.AuthLockedOut); got != 1 {
		t.Fatalf("locked_out counted %v times after %d wrong passwords, want 1", got, failures)
	}
	// From another address, with the right password: refused while locked.
	other := newUDPPeer(t, "127.0.0.2:0")
	alice := &rawClient{conn: other.conn, server: netUDPAddr(t, s.addrOf(UDP)), username: "alice", password: "alice-pw"}
	if err := alice.allocate(); errorCode(err) != 401 {
		t.Fatalf("alice with the right password while locked out: %v, want 401", err)
	}
	if got := authFailures(t, reg, metrics.AuthLockedOut); got != 2 {
		t.Fatalf("locked_out counted %v times, want 2", got)
	}
	if err := dialRaw(t, s.addrOf(UDP), "bob", "bob-pw").allocate(); err != nil {
		t.Fatalf("bob while alice is locked out: %v", err)
	}
}
