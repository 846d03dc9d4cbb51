//go:build linux

package relay

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
)

// The admin API's view of the relay (package admin serves it; *Server is its Backend). It
// reads what the workers and the EventHandler keep anyway, the per-allocation counters
// (dataplane.Traffic) and the allocation map, and ends an allocation the way pion ends one
// whose relay socket failed: relayConn.ReadFrom returns an error, pion's reader for the
// allocation calls its allocation manager's DeleteAllocation, the same call its lifetime
// timer makes at expiry, which removes the permissions and channels (our EventHandler
// empties the fast-path table), closes the relay socket (the port goes back to the range)
// and reports the deletion (OnAllocationDeleted counts it by reason). The client's next
// Refresh gets 437 (Allocation Mismatch) from the relay (mismatch.go: pion sends nothing).
// RFC 6062 TCP allocations: tcpadmin.go.

var _ admin.Backend = (*Server)(nil)

// endReason is why an allocation ended, as relayConn.ending holds it.
type endReason uint32

const (
	endNormal  endReason = iota // expiry, Refresh 0, a failed relay socket or shutdown
	endAdmin                    // DELETE /v1/allocations
	endRevoked                  // its credential was revoked
)

func (r endReason) label() string {
	switch r {
	case endAdmin:
		return metrics.EndAdmin
	case endRevoked:
		return metrics.EndRevoked
	}
	return metrics.EndNormal
}

func reasonOf(label string) endReason {
	if label == admin.ReasonRevoked {
		return endRevoked
	}
	return endAdmin
}

// end ends the allocation of r now (see above). Safe from any goroutine, and more than once.
func (r *relayConn) end(reason endReason) {
	if r.ending.CompareAndSwap(0, uint32(reason)) {
		// Wake pion's reader if it waits: an empty datagram from no address. Should the
		// queue be full, the reader is not waiting and sees ending on its next read.
		r.Push(nil, netip.AddrPort{})
	}
}

// SetRevocations installs the list of refused credentials that authenticate checks (nil: none).
func (s *Server) SetRevocations(r *admin.Revocations) { s.revoked.Store(r) }

// revokedCredential reports whether the credential a request carries is revoked.
func (s *Server) revokedCredential(username, user string) bool {
	r := s.revoked.Load()
	return r != nil && r.Refused(username, user, time.Now())
}

// Credential returns the user username names and its expiry, if the relay accepts it now.
func (s *Server) Credential(username string) (string, time.Time, bool) {
	if s.cfg.Validator == nil {
		return "", time.Time{}, false
	}
	c, err := s.cfg.Validator.Lookup(username)
	if err != nil {
		return "", time.Time{}, false
	}
	return c.UserID, c.Expiry, true
}

// Undrain takes new allocations again after Drain (not after Close).
func (s *Server) Undrain() {
	if s.closed.Load() {
		return
	}
	if s.draining.Swap(false) {
		s.log.Info("undrained: new allocations taken again", "live", s.liveAllocations())
	}
}

// Status describes the relay for GET /v1/status.
func (s *Server) Status() admin.Status {
	st := admin.Status{
		Started: s.started.UTC(), UptimeSeconds: time.Since(s.started).Seconds(),
		DataPath: string(s.loop), Workers: len(s.workers),
		Allocations: s.liveAllocations(), Draining: s.draining.Load(),
	}
	for _, l := range s.Addrs() {
		st.Listeners = append(st.Listeners, admin.Listener{Transport: string(l.Network), Addr: l.Addr.String()})
	}
	for _, a := range s.ports {
		ps := a.Stats()
		st.Ports.Total += ps.Capacity
		st.Ports.Used += ps.Held + ps.Reserved + ps.Quarantined
	}
	st.Ports.Free = st.Ports.Total - st.Ports.Used
	return st
}

// Allocations returns a page of live allocations, by id. A page costs a copy of the
// allocation map's pointers under s.mu, a filter and a selection outside it, and the reading
// of the allocations on the page; the workers take no lock and are not held up.
func (s *Server) Allocations(q admin.Query) (admin.AllocationPage, error) {
	match, err := clientFilter(q.Client)
	if err != nil {
		return admin.AllocationPage{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = admin.DefaultLimit
	}
	sel := s.selectAllocs(func(a *allocation) bool {
		return a.id > q.After && (q.User == "" || a.user == q.User) && match(a.key.src)
	}, limit+1)
	tsel := s.selectTCPAllocs(func(r *tcpRelay) bool {
		return r.id > q.After && (q.User == "" || r.user == q.User) && match(r.key.src)
	}, limit+1)
	var page admin.AllocationPage
	now := time.Now()
	var last uint64
	for len(page.Allocations) < limit && (len(sel) > 0 || len(tsel) > 0) {
		if len(tsel) == 0 || (len(sel) > 0 && sel[0].id < tsel[0].id) {
			page.Allocations = append(page.Allocations, s.describe(sel[0], now))
			last, sel = sel[0].id, sel[1:]
		} else {
			page.Allocations = append(page.Allocations, s.describeTCP(tsel[0], now))
			last, tsel = tsel[0].id, tsel[1:]
		}
	}
	if len(sel) > 0 || len(tsel) > 0 {
		page.Next = strconv.FormatUint(last, 10)
	}
	return page, nil
}

// selectAllocs returns the n allocations of lowest id that keep reports true, by id. Under
// s.mu it only copies the map's pointers (the EventHandler waits on s.mu, the workers do
// not); the filter and the selection run after.
func (s *Server) selectAllocs(keep func(*allocation) bool, n int) []*allocation {
	all := s.allAllocs()
	sel := all[:0]
	for _, a := range all {
		if keep(a) {
			sel = append(sel, a)
		}
	}
	if len(sel) > n {
		sel = smallestByID(sel, n)
	}
	slices.SortFunc(sel, func(a, b *allocation) int { return cmpID(a.id, b.id) })
	return sel
}

// allAllocs copies the live allocations' pointers, under s.mu.
func (s *Server) allAllocs() []*allocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*allocation, 0, len(s.allocs))
	for _, a := range s.allocs {
		all = append(all, a)
	}
	return all
}

func cmpID(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// smallestByID returns the n allocations of sel with the lowest ids, in any order:
// quickselect, O(len(sel)) on average.
func smallestByID(sel []*allocation, n int) []*allocation {
	lo, hi := 0, len(sel)-1
	for lo < hi {
		p := sel[lo+(hi-lo)/2].id
		i, j := lo, hi
		for i <= j {
			for sel[i].id < p {
				i++
			}
			for sel[j].id > p {
				j--
			}
			if i <= j {
				sel[i], sel[j] = sel[j], sel[i]
				i++
				j--
			}
		}
		switch {
		case n-1 <= j:
			hi = j
		case n-1 >= i:
			lo = i
		default:
			return sel[:n]
		}
	}
	return sel[:n]
}

// clientFilter reads the client= filter: an IP address (any port) or an address and port.
func clientFilter(c string) (func(netip.AddrPort) bool, error) {
	if c == "" {
		return func(netip.AddrPort) bool { return true }, nil
	}
	if ap, err := netip.ParseAddrPort(c); err == nil {
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		return func(x netip.AddrPort) bool { return netip.AddrPortFrom(x.Addr().Unmap(), x.Port()) == ap }, nil
	}
	if ip, err := netip.ParseAddr(c); err == nil {
		ip = ip.Unmap()
		return func(x netip.AddrPort) bool { return x.Addr().Unmap() == ip }, nil
	}
	return nil, fmt.Errorf("client %q: want an IP address (192.0.2.7, 2001:db8::7) or an address and port (192.0.2.7:40000, [2001:db8::7]:40000)", c)
}

// byID finds live allocation id: its port names the relay socket (one per relay address),
// its sequence number tells a socket on a reused port apart. O(relay addresses).
func (s *Server) byID(id uint64) *allocation {
	port := uint16(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ip := range s.cfg.RelayIPs {
		rc := s.relays[netip.AddrPortFrom(s.advertise(ip.Unmap()), port)]
		if rc != nil && rc.seq == id>>16 {
			return rc.owner.Load()
		}
	}
	return nil
}

// Allocation returns live allocation id.
func (s *Server) Allocation(id uint64) (admin.Allocation, bool) {
	a := s.byID(id)
	if a == nil {
		if r := s.tcpByID(id); r != nil {
			return s.describeTCP(r, time.Now()), true
		}
		return admin.Allocation{}, false
	}
	return s.describe(a, time.Now()), true
}

// EndAllocation ends live allocation id now.
func (s *Server) EndAllocation(id uint64, reason string) bool {
	a := s.byID(id)
	if a == nil {
		if r := s.tcpByID(id); r != nil {
			r.end(reasonOf(reason))
			return true
		}
		return false
	}
	a.rc.end(reasonOf(reason))
	return true
}

// EndUser ends every live allocation of user now. One pass over the allocation map.
func (s *Server) EndUser(user, reason string) int {
	n := 0
	for _, a := range s.allAllocs() {
		if a.user == user {
			a.rc.end(reasonOf(reason))
			n++
		}
	}
	for _, r := range s.allTCPAllocs() {
		if r.user == user {
			r.end(reasonOf(reason))
			n++
		}
	}
	return n
}

// describe reads a for the API: its counters, permissions and channels (under its own lock,
// O(its entries)).
func (s *Server) describe(a *allocation, now time.Time) admin.Allocation {
	out := admin.Allocation{
		ID: strconv.FormatUint(a.id, 10), User: a.user,
		Client: a.key.src.String(), Transport: metrics.Transport(a.transport).String(), Listener: a.key.dst.String(),
		Relayed: []string{a.rc.advertised.String()}, RelayedTransport: "udp",
		Created: a.rc.created.UTC(), AgeSeconds: now.Sub(a.rc.created).Seconds(),
		DataPath: "pion", Permissions: []string{}, Channels: []admin.Channel{},
	}
	if a.UDP {
		out.DataPath = string(s.loop)
	}
	if e := a.expires.Load(); e != 0 {
		out.Expires = time.Unix(0, e).UTC()
	}
	perms, chans := a.Entries()
	for _, p := range perms {
		out.Permissions = append(out.Permissions, p.String())
	}
	for _, c := range chans {
		out.Channels = append(out.Channels, admin.Channel{Number: c.Num, Peer: c.Peer.String()})
	}
	var bytes [metrics.NumDirections]uint64
	for d, t := range []*admin.Traffic{&out.ClientToPeer, &out.PeerToClient} {
		t.Packets, t.Bytes = a.rc.Traffic.Load(metrics.Direction(d))
		bytes[d] = t.Bytes
	}
	out.ClientToPeer.RateBps, out.PeerToClient.RateBps = a.rate.update(now, a.rc.created, bytes)
	return out
}

// rateSample is an allocation's byte counts at its last reading by the API, from which the
// next reading's rate is computed.
type rateSample struct {
	mu    sync.Mutex
	at    time.Time                      // Guarded by mu. Zero: never read.
	bytes [metrics.NumDirections]uint64  // Guarded by mu.
	rate  [metrics.NumDirections]float64 // the rate last computed. Guarded by mu.
}

// update returns the rate each way since the previous reading (since created on the first),
// and makes this reading the previous one; readings less than a second apart return the
// rate computed before.
func (r *rateSample) update(now, created time.Time, bytes [metrics.NumDirections]uint64) (c2p, p2c float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	since := r.at
	if since.IsZero() {
		since = created
	}
	if dt := now.Sub(since).Seconds(); dt >= 1 || r.at.IsZero() {
		for d := range bytes {
			if dt > 0 {
				r.rate[d] = float64(bytes[d]-r.bytes[d]) / dt
			}
		}
		r.at, r.bytes = now, bytes
	}
	return r.rate[metrics.ClientToPeer], r.rate[metrics.PeerToClient]
}

// Success answers that grant a lifetime.
var (
	allocateSuccess = stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse).Value()
	refreshSuccess  = stun.NewType(stun.MethodRefresh, stun.ClassSuccessResponse).Value()
)

// noteLifetime records the expiry an Allocate or Refresh success answer b grants the
// allocation of client to (over listener end), for the admin API. Other answers cost a
// compare.
func (s *Server) noteLifetime(b []byte, to net.Addr, end tupleEnd) {
	if len(b) < stunHeaderSize {
		return
	}
	if t := binary.BigEndian.Uint16(b[0:2]); t != allocateSuccess && t != refreshSuccess {
		return
	}
	off, l, ok := findAttrHeader(b, stun.AttrLifetime)
	if !ok || l != 4 || off+8 > len(b) {
		return
	}
	secs := binary.BigEndian.Uint32(b[off+4 : off+8])
	src, ok := sock.AddrPortOf(to)
	if !ok {
		return
	}
	_, local := end.tupleEnd()
	expires := time.Now().Add(time.Duration(secs) * time.Second).UnixNano()
	k := allocKey{src: src, dst: local}
	s.mu.Lock()
	a, r := s.allocs[k], s.tcpAllocs[k]
	s.mu.Unlock()
	if a != nil {
		a.expires.Store(expires)
	}
	if r != nil {
		r.expires.Store(expires)
	}
}
