//go:build linux

package relay

import (
	"net/netip"
	"testing"
)

// Connections are counted per IPv4 address and per IPv6 /64 (one subscriber's LAN, where a
// host picks any address it likes); an IPv4-mapped IPv6 address counts as the IPv4 address.
func TestConnLimit(t *testing.T) {
	ip := netip.MustParseAddr
	type step struct {
		from string
		want connRefusal
	}
	for _, tc := range []struct {
		name             string
		total, perSource int
		steps            []step
	}{
		{name: "per IPv4 address", total: -1, perSource: 2, steps: []step{
			{"192.0.2.1", connAdmitted}, {"192.0.2.1", connAdmitted}, {"192.0.2.1", connOverSource},
			{"::ffff:192.0.2.1", connOverSource}, {"192.0.2.2", connAdmitted},
		}},
		{name: "per IPv6 /64", total: -1, perSource: 1, steps: []step{
			{"2001:db8::1", connAdmitted}, {"2001:db8::ffff:1", connOverSource},
			{"2001:db8:0:0:8000::1", connOverSource}, {"2001:db8:0:1::1", connAdmitted},
		}},
		{name: "total", total: 2, perSource: -1, steps: []step{
			{"192.0.2.1", connAdmitted}, {"2001:db8::1", connAdmitted}, {"192.0.2.9", connOverTotal},
		}},
		{name: "unlimited", total: -1, perSource: -1, steps: []step{
			{"192.0.2.1", connAdmitted}, {"192.0.2.1", connAdmitted}, {"192.0.2.1", connAdmitted},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newConnLimit(tc.total, tc.perSource)
			var admitted []netip.Addr
			for i, st := range tc.steps {
				if got := l.acquire(ip(st.from)); got != st.want {
					t.Fatalf("step %d, from %s: %v, want %v", i, st.from, got, st.want)
				} else if got == connAdmitted {
					admitted = append(admitted, ip(st.from))
				}
			}
			if l.live() != len(admitted) {
				t.Fatalf("live %d, want %d", l.live(), len(admitted))
			}
			// Every slot given back: the same steps are admitted or refused again.
			for _, a := range admitted {
				l.release(a)
			}
			if l.live() != 0 || len(l.bySrc) != 0 {
				t.Fatalf("after release: live %d, %d sources counted; want none", l.live(), len(l.bySrc))
			}
			for i, st := range tc.steps {
				if got := l.acquire(ip(st.from)); got != st.want {
					t.Fatalf("again, step %d, from %s: %v, want %v", i, st.from, got, st.want)
				}
			}
		})
	}
}

// A PROXY protocol listener's connection takes a slot of the total cap at accept and one of
// its client's per-source cap once the header is read; a connection refused at the second
// step, or closed before it, gives back the total slot alone.
func TestConnLimitTwoSteps(t *testing.T) {
	l := newConnLimit(3, 1)
	client := netip.MustParseAddr("203.0.113.7")
	if got := l.acquireFor(netip.Addr{}); got != connAdmitted {
		t.Fatalf("first total slot: %v", got)
	}
	if got := l.acquireSource(client); got != connAdmitted {
		t.Fatalf("first source slot: %v", got)
	}
	if got := l.acquireFor(netip.Addr{}); got != connAdmitted {
		t.Fatalf("second total slot: %v", got)
	}
	if got := l.acquireSource(client); got != connOverSource {
		t.Fatalf("second connection of the same client: %v, want connOverSource", got)
	}
	l.releaseFor(netip.Addr{}) // the refused one closes
	if got := l.acquireFor(netip.Addr{}); got != connAdmitted {
		t.Fatalf("total slot after the refusal: %v", got)
	}
	if got := l.acquireFor(netip.Addr{}); got != connAdmitted {
		t.Fatalf("third total slot: %v", got)
	}
	if got := l.acquireFor(netip.Addr{}); got != connOverTotal {
		t.Fatalf("fourth total slot: %v, want connOverTotal", got)
	}
	l.releaseFor(client)
	l.releaseFor(netip.Addr{})
	l.releaseFor(netip.Addr{})
	if l.live() != 0 || len(l.bySrc) != 0 {
		t.Fatalf("after release: live %d, %d sources counted; want none", l.live(), len(l.bySrc))
	}
}
