//go:build linux

package relay

import (
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/metrics"
)

// The admin API's view of RFC 6062 TCP allocations (admin.go has the UDP ones). pion keeps
// them in its allocation manager like the others; the relay knows each by its relayed
// address (tcpRelay), in s.tcpAllocs once pion reports it created. An id is made as a relay
// socket's (seq<<16 | port, seq from the same counter), so ids never collide across kinds.
//
// Ending one: closing the relayed address's listening socket makes its Accept fail, on
// which pion's accept loop for the allocation calls DeleteAllocation, the call its lifetime
// timer makes at expiry: pion closes the peer connections it still holds (those no
// ConnectionBind claimed), closes the tcpRelay (the port and the quota go back) and reports
// the deletion. end closes every peer connection of the allocation itself as well, so that
// none outlives it whatever pion still holds.

// selectTCPAllocs returns the n TCP allocations of lowest id that keep reports true, by id.
func (s *Server) selectTCPAllocs(keep func(*tcpRelay) bool, n int) []*tcpRelay {
	var sel []*tcpRelay
	for _, r := range s.allTCPAllocs() {
		if keep(r) {
			sel = append(sel, r)
		}
	}
	slices.SortFunc(sel, func(a, b *tcpRelay) int { return cmpID(a.id, b.id) })
	if len(sel) > n {
		sel = sel[:n]
	}
	return sel
}

// allTCPAllocs copies the live TCP allocations' pointers, under s.mu.
func (s *Server) allTCPAllocs() []*tcpRelay {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*tcpRelay, 0, len(s.tcpAllocs))
	for _, r := range s.tcpAllocs {
		all = append(all, r)
	}
	return all
}

// tcpByID finds live TCP allocation id by its port, as byID does.
func (s *Server) tcpByID(id uint64) *tcpRelay {
	port := uint16(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ip := range s.cfg.RelayIPs {
		r := s.tcpRelays[netip.AddrPortFrom(s.advertise(ip.Unmap()), port)]
		if r != nil && r.id == id && s.tcpAllocs[r.key] == r {
			return r
		}
	}
	return nil
}

// end ends the TCP allocation of r now (see above). Safe from any goroutine, and more than
// once.
func (r *tcpRelay) end(reason endReason) {
	if !r.ending.CompareAndSwap(0, uint32(reason)) {
		return
	}
	_ = r.ln.Close()
	for _, pc := range r.srv.tcpConns.of(r) {
		_ = pc.Close()
	}
}

// of returns the live peer connections of r.
func (t *tcpConnTable) of(r *tcpRelay) []*peerConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*peerConn
	for _, pc := range t.byKey {
		if pc.r == r {
			out = append(out, pc)
		}
	}
	return out
}

// describeTCP reads r for the API: its relayed TCP address, its peer connections and the
// bytes they relayed.
func (s *Server) describeTCP(r *tcpRelay, now time.Time) admin.Allocation {
	out := admin.Allocation{
		ID: strconv.FormatUint(r.id, 10), User: r.user,
		Client: r.key.src.String(), Transport: metrics.Transport(r.transport).String(), Listener: r.key.dst.String(),
		Relayed: []string{r.advertised.String()}, RelayedTransport: "tcp",
		Created: r.created.UTC(), AgeSeconds: now.Sub(r.created).Seconds(),
		DataPath: "tcp", Permissions: []string{}, Channels: []admin.Channel{},
		TCPConnections: []admin.TCPConnection{},
	}
	if e := r.expires.Load(); e != 0 {
		out.Expires = time.Unix(0, e).UTC()
	}
	conns := s.tcpConns.of(r)
	slices.SortFunc(conns, func(a, b *peerConn) int { return a.key.remote.Compare(b.key.remote) })
	for _, pc := range conns {
		out.TCPConnections = append(out.TCPConnections, admin.TCPConnection{
			Peer: pc.key.remote.String(), Bound: pc.bound.Load(),
			ClientToPeer: pc.bytes[metrics.ClientToPeer].Load(), PeerToClient: pc.bytes[metrics.PeerToClient].Load(),
		})
	}
	var bytes [metrics.NumDirections]uint64
	for d, t := range []*admin.Traffic{&out.ClientToPeer, &out.PeerToClient} {
		t.Bytes = r.bytes[d].Load()
		bytes[d] = t.Bytes
	}
	out.ClientToPeer.RateBps, out.PeerToClient.RateBps = r.rate.update(now, r.created, bytes)
	return out
}
