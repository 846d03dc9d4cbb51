//go:build linux

package relay

import (
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// An RFC 6062 TCP allocation (pion's client AllocateTCP, two peer connections through Dial)
// is listed by the admin API with its relayed TCP address, its peer connections and the
// bytes each relayed each way; DELETE ends it: pion deletes the allocation, the relayed
// address stops listening and its port goes back, and both peer connections close.
func TestAdminTCPRelayAllocation(t *testing.T) {
	m, reg := newTestMetrics(t)
	s := startServer(t, func(c *Config) { c.Metrics = m })
	other := newRawAllocation(t, s, "bob") // a UDP allocation beside it, listed and left alone
	held := s.Status().Ports.Used
	username, password := auth.MintREST(testSecret, "tcpuser", time.Now().Add(time.Hour))
	c := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	t.Cleanup(func() { alloc.Close() })
	if s.Status().Ports.Used != held+1 {
		t.Fatalf("ports used %d, want %d", s.Status().Ports.Used, held+1)
	}

	// Whole chunks: relayTCP counts a splice when its chunk is done (or the flow pauses for
	// the idle timeout, or ends).
	const n1, n2 = tcpChunk, 2 * tcpChunk
	peers := []*tcpPeer{listenPeer(t, "127.0.0.1:0"), listenPeer(t, "127.0.0.1:0")}
	var echoes []<-chan struct{}
	for i, n := range []int{n1, n2} {
		conn, err := alloc.Dial("tcp", peers[i].addr().String())
		if err != nil {
			t.Fatalf("Dial %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		echoes = append(echoes, echo(peers[i].accept(t)))
		exchange(t, conn, n)
	}

	var a admin.Allocation
	// Both directions: a chunk is counted when its splice returns, which may be after the
	// peer's echo of it came back (and was counted) on a loaded machine.
	pollUntil(t, "the bytes counted both ways", func() bool {
		page, err := s.Allocations(admin.Query{User: "tcpuser"})
		if err != nil || len(page.Allocations) != 1 {
			return false
		}
		a = page.Allocations[0]
		return a.PeerToClient.Bytes == n1+n2 && a.ClientToPeer.Bytes == n1+n2
	})
	if a.RelayedTransport != "tcp" || len(a.Relayed) != 1 || a.Relayed[0] != alloc.Addr().String() ||
		a.Transport != "tcp" || a.DataPath != "tcp" || a.Expires.IsZero() || a.ClientToPeer.Bytes != n1+n2 {
		t.Errorf("TCP allocation %+v (relayed address %v)", a, alloc.Addr())
	}
	if len(a.TCPConnections) != 2 {
		t.Fatalf("peer connections %+v, want 2", a.TCPConnections)
	}
	for _, tc := range a.TCPConnections {
		want := uint64(n2)
		if tc.Peer == peers[0].addr().String() {
			want = n1
		} else if tc.Peer != peers[1].addr().String() {
			t.Errorf("peer connection to %s, want one of %v %v", tc.Peer, peers[0].addr(), peers[1].addr())
		}
		if !tc.Bound || tc.ClientToPeer != want || tc.PeerToClient != want {
			t.Errorf("peer connection %+v, want bound, %d bytes each way", tc, want)
		}
	}
	id, _ := strconv.ParseUint(a.ID, 10, 64)
	if got, ok := s.Allocation(id); !ok || got.ID != a.ID || got.RelayedTransport != "tcp" {
		t.Errorf("Allocation(%d) = %+v, %v", id, got, ok)
	}
	all, _ := s.Allocations(admin.Query{})
	if len(all.Allocations) != 2 {
		t.Errorf("listing of everything: %d allocations, want the UDP and the TCP one", len(all.Allocations))
	}
	p1, _ := s.Allocations(admin.Query{Limit: 1})
	after, _ := strconv.ParseUint(p1.Next, 10, 64)
	p2, _ := s.Allocations(admin.Query{Limit: 1, After: after})
	if len(p1.Allocations) != 1 || len(p2.Allocations) != 1 || p2.Next != "" || p1.Allocations[0].ID == p2.Allocations[0].ID {
		t.Errorf("pages of 1: %+v then %+v", p1, p2)
	}

	if !s.EndAllocation(id, admin.ReasonAdmin) {
		t.Fatal("EndAllocation: not found")
	}
	for i, done := range echoes {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("peer connection %d stayed open after the allocation ended", i)
		}
	}
	pollUntil(t, "the TCP allocation to end", func() bool { return s.liveAllocations() == 1 })
	pollUntil(t, "its port to go back", func() bool { return s.Status().Ports.Used == held })
	pollUntil(t, "its connection slots to go back", func() bool { total, _ := s.tcpConns.live("tcpuser"); return total == 0 })
	if _, ok := s.Allocation(id); ok {
		t.Error("the ended allocation is still found")
	}
	if s.EndAllocation(id, admin.ReasonAdmin) {
		t.Error("EndAllocation of an ended allocation reported found")
	}
	if got := counterValue(t, reg, "avedge_allocations_ended_total", "reason", metrics.EndAdmin); got != 1 {
		t.Errorf("allocations ended by admin: %v, want 1", got)
	}
	// The relayed address no longer listens.
	if in, err := net.DialTimeout("tcp", a.Relayed[0], rawTimeout); err == nil {
		_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, rerr := in.Read(make([]byte, 1))
		in.Close()
		if rerr == nil || errors.Is(rerr, os.ErrDeadlineExceeded) {
			t.Errorf("the relayed address still takes connections: %v", rerr)
		}
	}
	if err := other.refresh(10 * time.Minute); err != nil {
		t.Errorf("the UDP allocation beside it: Refresh: %v", err)
	}

	// By user, as a revocation ends them: a new TCP allocation of the user ends too.
	c2 := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	alloc2, err := c2.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	t.Cleanup(func() { alloc2.Close() })
	if n := s.EndUser("tcpuser", admin.ReasonRevoked); n != 1 {
		t.Errorf("EndUser = %d, want 1", n)
	}
	pollUntil(t, "the user's TCP allocation to end", func() bool { return s.liveAllocations() == 1 })
	if got := counterValue(t, reg, "avedge_allocations_ended_total", "reason", metrics.EndRevoked); got != 1 {
		t.Errorf("allocations ended by revocation: %v, want 1", got)
	}
}

// After DELETE, the client's next Refresh over its control connection gets 437 (Allocation
// Mismatch, RFC 8656 §7.3), signed with its key, for a TCP allocation as for a UDP one
// (TestAdminEndAllocation); before the kick a Refresh succeeds.
func TestAdminTCPRelayKickRefresh437(t *testing.T) {
	s := startServer(t, nil)
	c := newRawStreamAllocation(t, s, "kim")
	lifetime := stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 2, 0x58}} // 600 s
	refresh := stun.NewType(stun.MethodRefresh, stun.ClassRequest)
	if _, err := c.authedOn(c.conn, refresh, lifetime); err != nil {
		t.Fatalf("Refresh before the kick: %v", err)
	}
	if n := s.EndUser("kim", admin.ReasonAdmin); n != 1 {
		t.Fatalf("EndUser = %d, want 1", n)
	}
	pollUntil(t, "the TCP allocation to end", func() bool { return s.liveAllocations() == 0 })
	_, err := c.authedOn(c.conn, refresh, lifetime)
	if got := errorCode(err); got != stun.CodeAllocMismatch {
		t.Fatalf("Refresh after the kick: %v (code %d), want 437", err, got)
	}
	var se *stunError
	if !errors.As(err, &se) || c.integrity.Check(se.msg) != nil {
		t.Errorf("the 437 is not signed with the client's key: %v", err)
	}
	// Credentials that do not verify still get pion's 401, not a 437.
	c.password, c.nonce = "wrong", nil // challenged again, then signed with the wrong password
	if _, err := c.authedOn(c.conn, refresh, lifetime); errorCode(err) != stun.CodeUnauthorized {
		t.Errorf("Refresh with a wrong password after the kick: %v, want 401", err)
	}
}
