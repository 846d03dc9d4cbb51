//go:build linux

package relay

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/relay/internal/dataplane"
)

// adminShell is a Server with n allocations in its map (no sockets: what a listing reads),
// for the cost of the admin API's listing at scale.
func adminShell(n int) *Server {
	s := &Server{allocs: make(map[allocKey]*allocation, n), fast: dataplane.NewTable(), loop: DataPathEpoll}
	for i := 0; i < n; i++ {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
		rc := &relayConn{Relay: dataplane.NewRelay(-1, 1, 0), seq: uint64(i + 1), created: time.Now(),
			advertised: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(20000+i%10000))}
		k := allocKey{src: client, dst: netip.MustParseAddrPort("192.0.2.1:3478")}
		s.allocs[k] = &allocation{Alloc: s.fast.NewAlloc(rc.Relay), rc: rc, id: rc.seq<<16 | uint64(rc.advertised.Port()),
			user: fmt.Sprintf("user%d", i%5000), key: k}
	}
	return s
}

// BenchmarkAdminList: one page of 100 allocations out of 100 000, the first and one in the
// middle, all and filtered by user (20 each), and ending one user's (the scan).
func BenchmarkAdminList(b *testing.B) {
	s := adminShell(100_000)
	for _, bc := range []struct {
		name string
		q    admin.Query
	}{
		{"first-page", admin.Query{Limit: 100}},
		{"middle-page", admin.Query{Limit: 100, After: 50_000 << 16}},
		{"by-user", admin.Query{Limit: 100, User: "user42"}},
		{"by-client", admin.Query{Limit: 100, Client: "10.0.1.2"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := s.Allocations(bc.q)
				if err != nil || len(p.Allocations) == 0 {
					b.Fatalf("%d allocations, %v", len(p.Allocations), err)
				}
			}
		})
	}
}

// BenchmarkAdminSnapshot is the part of a listing done under s.mu, which the EventHandler
// waits on: copying 100 000 allocation pointers.
func BenchmarkAdminSnapshot(b *testing.B) {
	s := adminShell(100_000)
	for b.Loop() {
		if len(s.allAllocs()) != 100_000 {
			b.Fatal("short")
		}
	}
}
