//go:build linux

package relay

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// The admin API's backend (admin.go) against real allocations: a listing reads the
// per-allocation counters the data path keeps, whichever path carried the packets; ending an
// allocation frees its port and the client's next Refresh fails; a revoked credential is
// refused and its live allocations end.

func TestAdminListingCountsRealTraffic(t *testing.T) { forEachDataPath(t, testAdminListing) }

func testAdminListing(t *testing.T, path DataPath) {
	s := startServerOn(t, path, nil)
	c := newRawAllocation(t, s, "alice")
	newRawAllocation(t, s, "bob")
	peer := newUDPPeer(t, "127.0.0.1:0")
	if err := c.channelBind(0x4001, peer.addr()); err != nil {
		t.Fatalf("ChannelBind: %v", err)
	}
	// Two indications (the slow path), then three ChannelData (the workers) each way.
	for i := range 2 {
		if err := c.sendIndication(peer.addr(), payload(1, i, 100)); err != nil {
			t.Fatal(err)
		}
		peer.expect(t, i, c.relayed, payload(1, i, 100))
	}
	for i := range 3 {
		if err := c.sendChannelData(0x4001, payload(2, i, 200), false); err != nil {
			t.Fatal(err)
		}
		peer.expect(t, i, c.relayed, payload(2, i, 200))
		if err := peer.send(c.relayed, payload(3, i, 300)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.recvChannelData(); err != nil {
			t.Fatalf("ChannelData %d back: %v", i, err)
		}
	}

	// pion's facade counts an indication just after its send (wantTraffic): wait for it.
	var page admin.AllocationPage
	var err error
	pollUntil(t, "alice's 5 packets to the peer", func() bool {
		page, err = s.Allocations(admin.Query{User: "alice"})
		return err == nil && len(page.Allocations) == 1 && page.Allocations[0].ClientToPeer.Packets >= 5
	})
	if page.Next != "" {
		t.Errorf("one allocation, and a next page %q", page.Next)
	}
	a := page.Allocations[0]
	if a.User != "alice" || a.Transport != "udp" || a.Client != c.mapped.String() || a.Relayed[0] != c.relayed.String() || a.DataPath != string(s.loop) {
		t.Errorf("allocation %+v: want alice, udp, client %v, relayed %v, data path %s", a, c.mapped, c.relayed, s.loop)
	}
	if len(a.Permissions) != 1 || a.Permissions[0] != "127.0.0.1" || len(a.Channels) != 1 || a.Channels[0] != (admin.Channel{Number: 0x4001, Peer: peer.addr().String()}) {
		t.Errorf("permissions %v, channels %v: want 127.0.0.1 and channel 0x4001 to %v", a.Permissions, a.Channels, peer.addr())
	}
	if want := (admin.Traffic{Packets: 5, Bytes: 2*100 + 3*200}); a.ClientToPeer.Packets != want.Packets || a.ClientToPeer.Bytes != want.Bytes {
		t.Errorf("client to peer %+v, want %+v", a.ClientToPeer, want)
	}
	if want := (admin.Traffic{Packets: 3, Bytes: 3 * 300}); a.PeerToClient.Packets != want.Packets || a.PeerToClient.Bytes != want.Bytes {
		t.Errorf("peer to client %+v, want %+v", a.PeerToClient, want)
	}
	if a.ClientToPeer.RateBps <= 0 {
		t.Errorf("client to peer rate %v: want > 0 on the first reading", a.ClientToPeer.RateBps)
	}
	if until := time.Until(a.Expires); until < 9*time.Minute || until > 10*time.Minute {
		t.Errorf("expires in %v, want the 10 minutes granted", until)
	}
	id, _ := strconv.ParseUint(a.ID, 10, 64)
	if one, ok := s.Allocation(id); !ok || one.ID != a.ID {
		t.Errorf("Allocation(%d) = %+v, %v", id, one, ok)
	}
	if _, ok := s.Allocation(id + 1<<16); ok {
		t.Errorf("Allocation of another sequence on the same port found")
	}

	// Filters and pages.
	for _, tc := range []struct {
		q    admin.Query
		want int
	}{
		{admin.Query{}, 2},
		{admin.Query{Client: "127.0.0.1"}, 2},
		{admin.Query{Client: c.mapped.String()}, 1},
		{admin.Query{Client: "127.0.0.2"}, 0},
		{admin.Query{User: "carol"}, 0},
	} {
		p, err := s.Allocations(tc.q)
		if err != nil || len(p.Allocations) != tc.want {
			t.Errorf("Allocations(%+v): %d, %v; want %d", tc.q, len(p.Allocations), err, tc.want)
		}
	}
	p1, _ := s.Allocations(admin.Query{Limit: 1})
	if len(p1.Allocations) != 1 || p1.Next == "" {
		t.Fatalf("first page of 1: %+v", p1)
	}
	after, _ := strconv.ParseUint(p1.Next, 10, 64)
	p2, _ := s.Allocations(admin.Query{Limit: 1, After: after})
	if len(p2.Allocations) != 1 || p2.Next != "" || p2.Allocations[0].ID == p1.Allocations[0].ID {
		t.Fatalf("second page of 1: %+v after %+v", p2, p1)
	}
	if _, err := s.Allocations(admin.Query{Client: "not-an-address"}); err == nil {
		t.Errorf("client filter not-an-address accepted")
	}
}

func TestAdminEndAllocation(t *testing.T) {
	m, reg := newTestMetrics(t)
	s := startServer(t, func(c *Config) { c.Metrics = m })
	c := newRawAllocation(t, s, "alice")
	other := newRawAllocation(t, s, "bob")
	page, _ := s.Allocations(admin.Query{User: "alice"})
	id, _ := strconv.ParseUint(page.Allocations[0].ID, 10, 64)
	held := s.Status().Ports.Used
	if !s.EndAllocation(id, admin.ReasonAdmin) {
		t.Fatal("EndAllocation: not found")
	}
	pollUntil(t, "the allocation to end", func() bool { return s.liveAllocations() == 1 })
	pollUntil(t, "its port to go back", func() bool { return s.Status().Ports.Used == held-1 })
	// The client's next Refresh gets 437 Allocation Mismatch (RFC 8656 §7.3), signed with
	// its key (pion v5 alone leaves it unanswered: mismatch.go), and it can allocate again
	// on the same 5-tuple, whose Refresh then succeeds.
	err := c.refresh(10 * time.Minute)
	if got := errorCode(err); got != stun.CodeAllocMismatch {
		t.Fatalf("Refresh after the kick: %v (code %d), want 437", err, got)
	}
	var se *stunError
	if !errors.As(err, &se) || c.integrity.Check(se.msg) != nil {
		t.Errorf("the 437 is not signed with the client's key: %v", err)
	}
	if err := c.allocate(); err != nil {
		t.Fatalf("Allocate again after the 437: %v", err)
	}
	if err := c.refresh(10 * time.Minute); err != nil {
		t.Errorf("Refresh of the new allocation on the same 5-tuple: %v", err)
	}
	if err := c.refresh(0); err != nil {
		t.Fatalf("Refresh 0: %v", err)
	}
	pollUntil(t, "the new allocation released", func() bool { return s.liveAllocations() == 1 })
	if err := other.refresh(10 * time.Minute); err != nil {
		t.Errorf("another client's Refresh: %v", err)
	}
	if s.EndAllocation(id, admin.ReasonAdmin) {
		t.Error("EndAllocation of an ended allocation reported found")
	}
	if got := counterValue(t, reg, "avedge_allocations_ended_total", "reason", metrics.EndAdmin); got != 1 {
		t.Errorf("allocations ended by admin: %v, want 1", got)
	}
	// By user: both of carol's, not bob's.
	newRawAllocation(t, s, "carol")
	newRawAllocation(t, s, "carol")
	if n := s.EndUser("carol", admin.ReasonAdmin); n != 2 {
		t.Errorf("EndUser(carol) = %d, want 2", n)
	}
	pollUntil(t, "carol's allocations to end", func() bool { return s.liveAllocations() == 1 })
}

func TestAdminRevocation(t *testing.T) {
	m, reg := newTestMetrics(t)
	s := startServer(t, func(c *Config) { c.Metrics = m })
	rv, err := admin.NewRevocations("")
	if err != nil {
		t.Fatal(err)
	}
	s.SetRevocations(rv)
	c := newRawAllocation(t, s, "mallory")
	username, _ := auth.MintREST(testSecret, "mallory", time.Now().Add(time.Hour))
	user, exp, ok := s.Credential(username)
	if !ok || user != "mallory" || exp.IsZero() {
		t.Fatalf("Credential(%s) = %q, %v, %v", username, user, exp, ok)
	}
	if err := rv.Add(admin.Revocation{Username: "mallory"}); err != nil {
		t.Fatal(err)
	}
	if n := s.EndUser("mallory", admin.ReasonRevoked); n != 1 {
		t.Fatalf("EndUser = %d", n)
	}
	pollUntil(t, "the revoked allocation to end", func() bool { return s.liveAllocations() == 0 })
	// A new credential of the revoked user: 401.
	u2, p2 := auth.MintREST(testSecret, "mallory", time.Now().Add(2*time.Hour))
	d := dialRaw(t, s.addrOf(UDP), u2, p2)
	if err := d.allocate(); errorCode(err) != stun.CodeUnauthorized {
		t.Errorf("Allocate of a revoked user: %v, want 401", err)
	}
	// The revoked credential is refused (401 from pion's authentication), not left
	// unanswered.
	if err := c.refresh(time.Minute); errorCode(err) != stun.CodeUnauthorized {
		t.Errorf("Refresh of the revoked allocation: %v, want 401", err)
	}
	if got := counterValue(t, reg, "avedge_auth_failures_total", "reason", metrics.AuthRevoked); got < 1 {
		t.Errorf("auth failures by revoked: %v", got)
	}
	if got := counterValue(t, reg, "avedge_allocations_ended_total", "reason", metrics.EndRevoked); got != 1 {
		t.Errorf("allocations ended by revocation: %v, want 1", got)
	}
	// Lifted: allowed again.
	if ok, _ := rv.Remove("mallory"); !ok {
		t.Fatal("Remove")
	}
	newRawAllocation(t, s, "mallory")
}

// TestAdminStatusAndUndrain checks Status against the server and Undrain after Drain.
func TestAdminStatusAndUndrain(t *testing.T) {
	s := startServer(t, nil)
	newRawAllocation(t, s, "alice")
	st := s.Status()
	if st.Allocations != 1 || st.Workers != 2 || st.Ports.Total != 10000 || st.Ports.Used != 1 || st.Ports.Free != 9999 || len(st.Listeners) != 2 || st.Draining {
		t.Errorf("status %+v", st)
	}
	s.Drain()
	if !s.Status().Draining {
		t.Error("not draining after Drain")
	}
	username, password := auth.MintREST(testSecret, "bob", time.Now().Add(time.Hour))
	if err := dialRaw(t, s.addrOf(UDP), username, password).allocate(); err == nil {
		t.Error("Allocate while draining succeeded")
	}
	s.Undrain()
	if ready, _ := s.Ready(); !ready || s.Status().Draining {
		t.Error("still draining after Undrain")
	}
	newRawAllocation(t, s, "bob")
}

func newTestMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// counterValue reads counter name{label=value} from reg (0 when it has no such series).
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A TCP client's allocation: listed with its transport, its data path (pion relays a stream
// client's data) and its counters; ended like a UDP one.
func TestAdminTCPAllocation(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "tina", time.Now().Add(time.Hour))
	c := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over TCP: %v", err)
	}
	defer relayed.Close()
	peer := newUDPPeer(t, "127.0.0.1:0")
	go func() { // echo
		for {
			b, from, err := peer.recv(5 * time.Second)
			if err != nil {
				return
			}
			_ = peer.send(from, b)
		}
	}()
	roundTrip(t, relayed, net.UDPAddrFromAddrPort(peer.addr()), []byte("hello over tcp"))
	// The facades count a packet just after its send, which the echo may overtake.
	var a admin.Allocation
	pollUntil(t, "tina's counters", func() bool {
		page, _ := s.Allocations(admin.Query{User: "tina"})
		if len(page.Allocations) != 1 {
			return false
		}
		a = page.Allocations[0]
		return a.ClientToPeer.Packets > 0 && a.PeerToClient.Packets > 0
	})
	if a.Transport != "tcp" || a.DataPath != "pion" || a.ClientToPeer.Packets == 0 || a.PeerToClient.Packets == 0 || a.Expires.IsZero() {
		t.Errorf("TCP allocation %+v", a)
	}
	id, _ := strconv.ParseUint(a.ID, 10, 64)
	if !s.EndAllocation(id, admin.ReasonAdmin) {
		t.Fatal("EndAllocation: not found")
	}
	pollUntil(t, "the TCP allocation to end", func() bool { return s.liveAllocations() == 0 })
}
