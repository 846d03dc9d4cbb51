//go:build linux

package relay

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
)

// Issue 14, item 8: the caps a zero Config applies are those of a public edge, and a
// negative value lifts each.
func TestQuotaDefaults(t *testing.T) {
	cases := []struct {
		name           string
		in             Config
		total, user    int
		bytesPerSecond int64
	}{
		{name: "zero", in: Config{}, total: 10000, user: DefaultUserQuota, bytesPerSecond: DefaultAllocationBandwidth},
		{name: "range sets the total", in: Config{MinPort: 40000, MaxPort: 40999}, total: 1000, user: DefaultUserQuota, bytesPerSecond: DefaultAllocationBandwidth},
		{name: "set", in: Config{MaxAllocations: 7, UserQuota: 3, AllocationBandwidth: 1000}, total: 7, user: 3, bytesPerSecond: 1000},
		{name: "lifted", in: Config{MaxAllocations: -1, UserQuota: -1, AllocationBandwidth: -1}, total: -1, user: -1, bytesPerSecond: -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.in.withDefaults()
			if c.MaxAllocations != tc.total || c.UserQuota != tc.user || c.AllocationBandwidth != tc.bytesPerSecond {
				t.Fatalf("total %d, user %d, bandwidth %d; want %d, %d, %d", c.MaxAllocations, c.UserQuota,
					c.AllocationBandwidth, tc.total, tc.user, tc.bytesPerSecond)
			}
		})
	}
}

// With no quota set, one user's allocations stop at DefaultUserQuota (486), so one
// credential cannot take the relay range.
func TestDefaultUserQuotaRefusesOneCredentialMore(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "mallory", time.Now().Add(time.Hour))
	for i := 0; i < DefaultUserQuota; i++ {
		c := dialRaw(t, s.addrOf(UDP), username, password)
		if err := c.allocate(); err != nil {
			t.Fatalf("allocation %d of %d: %v", i+1, DefaultUserQuota, err)
		}
	}
	c := dialRaw(t, s.addrOf(UDP), username, password)
	if err := c.allocate(); errorCode(err) != stun.CodeAllocQuotaReached {
		t.Fatalf("allocation %d: %v (code %d), want 486 Allocation Quota Reached", DefaultUserQuota+1, err, errorCode(err))
	}
	if held := s.Stats().Ports.Held; held != DefaultUserQuota {
		t.Fatalf("%d ports held, want %d", held, DefaultUserQuota)
	}
}

// RFC 8656 §7.2 checks EVEN-PORT (step 6) before the quota (step 7), and pion asks the
// relay address generator for the even port at step 6: a user at quota must still not
// reserve a port (the odd half of a pair is held for 30 s) with every refused Allocate.
func TestUserAtQuotaReservesNoPort(t *testing.T) {
	s := startServer(t, func(c *Config) { c.UserQuota = 2 })
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	for i := 0; i < 2; i++ {
		c := dialRaw(t, s.addrOf(UDP), username, password)
		if err := c.allocate(); err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
	}
	before := s.Stats().Ports
	evenPortR := stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}}
	for i, extra := range [][]stun.Setter{{evenPortR}, {evenPortR}, nil} {
		c := dialRaw(t, s.addrOf(UDP), username, password)
		if err := c.allocate(extra...); errorCode(err) != stun.CodeAllocQuotaReached {
			t.Fatalf("request %d at quota: %v (code %d), want 486", i, err, errorCode(err))
		}
	}
	if after := s.Stats().Ports; after != before {
		t.Fatalf("ports before the refused requests %+v, after %+v; want them unchanged", before, after)
	}
	// Under quota, EVEN-PORT still gets its pair.
	u2, p2 := auth.MintREST(testSecret, "bob", time.Now().Add(time.Hour))
	c := dialRaw(t, s.addrOf(UDP), u2, p2)
	if err := c.allocate(evenPortR); err != nil {
		t.Fatalf("bob's EVEN-PORT allocation: %v", err)
	}
	if p := c.relayed.Port(); p%2 != 0 {
		t.Fatalf("bob's relayed port %d is odd", p)
	}
	if st := s.Stats().Ports; st.Held != before.Held+1 || st.Reserved != before.Reserved+1 {
		t.Fatalf("after bob's EVEN-PORT allocation: %d held, %d reserved; want %d and %d", st.Held, st.Reserved,
			before.Held+1, before.Reserved+1)
	}
}
