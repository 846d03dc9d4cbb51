//go:build linux

package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/puzpuzpuz/xsync/v4"

	"github.com/avedge/avedge/relay/internal/sock"
)

// The fast-path table. It mirrors what pion decided for every allocation: which client
// 5-tuple (of the relay's UDP listeners) it belongs to, which peer IPs have a permission,
// which channels are bound to which peers. It is four flat maps:
//
//	(listener, client address)  → allocation   UDP allocations only (IPv4 and IPv6 apart)
//	(allocation, peer IP)       → permission
//	(allocation, channel)       → channel
//	(allocation, peer address)  → channel
//
// Workers read them on every packet without a lock and without allocating: each is a
// concurrent hash map (xsync.Map: a read is a few atomic loads; a writer locks one bucket).
// The control plane (pion's EventHandler, in package relay) changes one entry per event, so
// an insert, a removal, a new permission or channel costs O(1) whatever the number of
// allocations, permissions and channels. Keys are fixed-size and hold no pointer, so that a
// kernel offload could mirror each map into a BPF hash map as it is (and because the hash of a
// key with a pointer makes the key escape: an allocation per packet).

// Key names an allocation by its client-side 5-tuple: which listen address (the transport is
// UDP) and the client's address.
type Key struct {
	Lis    uint16 // Listener.ID
	Client netip.AddrPort
}

// Key as the table stores it: an IPv4 client (or an IPv4-mapped one) as one integer, address
// << 32 | port << 16 | listener, which xsync hashes without maphash; an IPv6 client as a
// clientKey6 (zones are not kept).
func (k Key) v4() (uint64, bool) {
	ip := k.Client.Addr()
	if !ip.Is4() && !ip.Is4In6() {
		return 0, false
	}
	b := ip.As16()
	return uint64(b[12])<<56 | uint64(b[13])<<48 | uint64(b[14])<<40 | uint64(b[15])<<32 |
		uint64(k.Client.Port())<<16 | uint64(k.Lis), true
}

type clientKey6 struct {
	ip   [16]byte
	port uint16
	lis  uint16
}

func (k Key) v6() clientKey6 {
	return clientKey6{ip: k.Client.Addr().As16(), port: k.Client.Port(), lis: k.Lis}
}

// addrKey names a peer IP (port 0) or a peer address of an allocation: tag is the allocation's
// id in its upper 48 bits and the port in its lower 16.
type addrKey struct {
	tag uint64
	ip  [16]byte
}

func (a *Alloc) addrKey(ip netip.Addr, port uint16) addrKey {
	return addrKey{tag: a.id<<16 | uint64(port), ip: ip.As16()}
}

// chanKey names a channel of an allocation: the allocation's id in the upper 48 bits, the
// channel number in the lower 16. A plain uint64, which xsync hashes without maphash.
func (a *Alloc) chanKey(num uint16) uint64 { return a.id<<16 | uint64(num) }

// ipCell is an allocation's entry for one peer IP. Workers read permitted (a channel through
// its Chan, a peer packet through the table); the control plane keeps the cell while a
// permission or a channel refers to it.
type ipCell struct {
	permitted atomic.Bool
	refused   atomic.Bool // the peer policy, as last reloaded, refuses ip (Table.Recheck)
	ip        [16]byte    // Static.
	idx       int32       // index in the allocation's perms while permitted. Guarded by the allocation's mu.
	refs      int32       // channels to this IP, and one while permitted. Guarded by the allocation's mu.
}

// Chan is one channel binding. Static after construction but for idx; cell is set by
// Table.Bind before the channel is published.
type Chan struct {
	Num     uint16
	Peer    netip.AddrPort
	Raw     sock.RawAddr // Peer, ready to send to
	Refused bool         // the peer is one of the relay's own service ports: drop (policy)
	cell    *ipCell      // the peer IP's entry of the allocation
	gone    atomic.Bool  // set when it is unbound (for Alloc.ChanFromPeer's hint)
	idx     int32        // index in its allocation's chans. Guarded by the allocation's mu; workers never read it.
}

// Permitted reports whether the channel's peer IP has a permission (RFC 8656 §12.4: ChannelData
// needs both). Lock-free; one atomic load.
func (c *Chan) Permitted() bool { return c.cell != nil && c.cell.open() }

// open reports whether the IP has a permission that the peer policy still allows.
func (c *ipCell) open() bool { return c.permitted.Load() && !c.refused.Load() }

// Alloc is an allocation as the workers see it. Its exported fields are set before it is
// published (Table.Insert, Relay.Alloc) and static after; its permissions and channels change
// through Table.Permit, Revoke, Bind, Unbind and Clear.
type Alloc struct {
	t         *Table               // Static. (First: every lookup through the allocation reads t and id.)
	id        uint64               // names it in the table's keys; never reused. Static.
	Relay     *Relay               // its relay socket.
	UDP       bool                 // the client reached us on a UDP listener we own.
	hint      atomic.Pointer[Chan] // the channel ChanFromPeer found last
	Key       Key                  // UDP allocations only.
	ClientRaw sock.RawAddr         // Key.Client, ready to send to. UDP allocations only.

	// The control plane's own record of the allocation's entries, so that Clear removes
	// them all and the caps can count them. Workers never read these.
	mu    sync.Mutex
	perms []*ipCell // permitted peer IPs; perms[c.idx] == c. Guarded by mu.
	chans []*Chan   // bound channels; chans[c.idx] == c. Guarded by mu.
	dead  bool      // set by Clear: nothing is added after. Guarded by mu.
}

// maxAllocID bounds allocation ids to the 48 bits the keys give them.
const maxAllocID = 1<<48 - 1

// NewAlloc returns an allocation of relay socket r with no channel and no permission, ready
// to be filled in and published.
func (t *Table) NewAlloc(r *Relay) *Alloc {
	return &Alloc{Relay: r, t: t, id: t.nextID.Add(1) & maxAllocID}
}

// ChanByNum returns the channel bound to number num, or nil. Lock-free; allocates nothing.
func (a *Alloc) ChanByNum(num uint16) *Chan {
	c, _ := a.t.chans.Load(a.chanKey(num))
	return c
}

// ChanByPeer returns the channel bound to peer, or nil. Lock-free; allocates nothing.
func (a *Alloc) ChanByPeer(peer netip.AddrPort) *Chan {
	c, _ := a.t.peers.Load(a.addrKey(peer.Addr(), peer.Port()))
	return c
}

// ChanFromPeer is ChanByPeer for the worker that reads the allocation's relay socket: a call's
// media comes from one peer address at a time, so the channel found last is tried first (an
// atomic load and a compare) before the table. Lock-free; allocates nothing.
func (a *Alloc) ChanFromPeer(peer netip.AddrPort) *Chan {
	if c := a.hint.Load(); c != nil && c.Peer == peer && !c.gone.Load() {
		return c
	}
	c := a.ChanByPeer(peer)
	if c != nil {
		a.hint.Store(c)
	}
	return c
}

// Permitted reports whether ip has a permission. Lock-free; allocates nothing.
func (a *Alloc) Permitted(ip netip.Addr) bool {
	c, ok := a.t.ips.Load(a.addrKey(ip, 0))
	return ok && c.open()
}

// Counts returns how many permissions and channels a has.
func (a *Alloc) Counts() (perms, chans int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.perms), len(a.chans)
}

// Entries returns a's permitted peer IPs and its bound channels (number and peer), for the
// admin API. O(a's entries), under a's lock; workers are not held up.
func (a *Alloc) Entries() (perms []netip.Addr, chans []ChanEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.perms {
		perms = append(perms, netip.AddrFrom16(c.ip).Unmap())
	}
	for _, c := range a.chans {
		chans = append(chans, ChanEntry{Num: c.Num, Peer: c.Peer})
	}
	return perms, chans
}

// ChanEntry is a bound channel as Entries reports it.
type ChanEntry struct {
	Num  uint16
	Peer netip.AddrPort
}

// Table holds every live allocation's permissions and channels, and the UDP allocations by
// Key. Readers: Lookup and the Alloc and Chan lookups (any worker, lock-free). Writers: the
// control plane; changes to one allocation are serialised by its mu, and the maps lock
// themselves.
type Table struct {
	byCl4  *xsync.Map[uint64, *Alloc] // by Key.v4
	byCl6  *xsync.Map[clientKey6, *Alloc]
	ips    *xsync.Map[addrKey, *ipCell] // peer IPs with a permission or a channel
	chans  *xsync.Map[uint64, *Chan]
	peers  *xsync.Map[addrKey, *Chan]
	nextID atomic.Uint64
	nPerms atomic.Int64 // permissions in the table
	nChans atomic.Int64 // channels in the table
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		byCl4: xsync.NewMap[uint64, *Alloc](),
		byCl6: xsync.NewMap[clientKey6, *Alloc](),
		ips:   xsync.NewMap[addrKey, *ipCell](),
		chans: xsync.NewMap[uint64, *Chan](),
		peers: xsync.NewMap[addrKey, *Chan](),
	}
}

// Lookup returns the UDP allocation of k, or nil. Lock-free; allocates nothing.
func (t *Table) Lookup(k Key) *Alloc {
	if k4, ok := k.v4(); ok {
		a, _ := t.byCl4.Load(k4)
		return a
	}
	a, _ := t.byCl6.Load(k.v6())
	return a
}

// Insert publishes a under a.Key (UDP allocations), replacing any allocation there.
func (t *Table) Insert(a *Alloc) {
	if k4, ok := a.Key.v4(); ok {
		t.byCl4.Store(k4, a)
		return
	}
	t.byCl6.Store(a.Key.v6(), a)
}

// Remove takes a out of the table's allocations by Key, if it is the one there. It reports
// whether it was.
func (t *Table) Remove(a *Alloc) bool {
	removed := false
	if k4, ok := a.Key.v4(); ok {
		t.byCl4.Compute(k4, removeIf(a, &removed))
	} else {
		t.byCl6.Compute(a.Key.v6(), removeIf(a, &removed))
	}
	return removed
}

func removeIf(a *Alloc, removed *bool) func(old *Alloc, loaded bool) (*Alloc, xsync.ComputeOp) {
	return func(old *Alloc, loaded bool) (*Alloc, xsync.ComputeOp) {
		if loaded && old == a {
			*removed = true
			return nil, xsync.DeleteOp
		}
		return old, xsync.CancelOp
	}
}

// cellLocked returns a's cell for ip, made (and published, not permitted) if there is none.
// Callers hold a.mu, which serialises every write of a's keys.
func (t *Table) cellLocked(a *Alloc, ip netip.Addr) *ipCell {
	k := a.addrKey(ip, 0)
	if c, ok := t.ips.Load(k); ok {
		return c
	}
	c := &ipCell{ip: k.ip}
	t.ips.Store(k, c)
	return c
}

// releaseLocked drops one reference to c, and c itself with the last. Callers hold a.mu.
func (t *Table) releaseLocked(a *Alloc, c *ipCell) {
	if c.refs--; c.refs == 0 {
		t.ips.Delete(addrKey{tag: a.id << 16, ip: c.ip})
	}
}

// Permit installs a permission for ip on a. It reports whether it is new (false: a had one,
// or a was cleared).
func (t *Table) Permit(a *Alloc, ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dead {
		return false
	}
	c := t.cellLocked(a, ip)
	if c.permitted.Load() {
		return false
	}
	c.refs++
	c.idx = int32(len(a.perms))
	a.perms = append(a.perms, c)
	c.refused.Store(false) // the policy in force just granted it
	c.permitted.Store(true)
	t.nPerms.Add(1)
	return true
}

// Revoke removes a's permission for ip. It reports whether there was one.
func (t *Table) Revoke(a *Alloc, ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := t.ips.Load(a.addrKey(ip, 0))
	if !ok || !c.permitted.Load() {
		return false
	}
	c.permitted.Store(false)
	// The last entry takes the removed one's place.
	last := int32(len(a.perms) - 1)
	if c.idx != last {
		moved := a.perms[last]
		moved.idx = c.idx
		a.perms[c.idx] = moved
	}
	a.perms[last] = nil
	a.perms = a.perms[:last]
	if last == 0 {
		a.perms = nil
	}
	t.releaseLocked(a, c)
	t.nPerms.Add(-1)
	return true
}

// Bind adds channel c to a. It reports whether it is new (false: the number is bound, or a
// was cleared).
func (t *Table) Bind(a *Alloc, c *Chan) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := a.chanKey(c.Num)
	if _, bound := t.chans.Load(k); bound || a.dead {
		return false
	}
	c.cell = t.cellLocked(a, c.Peer.Addr())
	c.cell.refs++
	t.chans.Store(k, c)
	t.peers.Store(a.addrKey(c.Peer.Addr(), c.Peer.Port()), c)
	c.idx = int32(len(a.chans))
	a.chans = append(a.chans, c)
	t.nChans.Add(1)
	return true
}

// Unbind removes a's channel num. It reports whether it was bound.
func (t *Table) Unbind(a *Alloc, num uint16) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := t.chans.LoadAndDelete(a.chanKey(num))
	if !ok {
		return false
	}
	c.gone.Store(true)
	t.unbindLocked(a, c)
	last := len(a.chans) - 1
	if int(c.idx) != last {
		moved := a.chans[last]
		moved.idx = c.idx
		a.chans[c.idx] = moved
	}
	a.chans[last] = nil
	a.chans = a.chans[:last]
	if last == 0 {
		a.chans = nil
	}
	t.releaseLocked(a, c.cell)
	t.nChans.Add(-1)
	return true
}

// unbindLocked removes c's entry by peer address, if it is c's. Callers hold a.mu.
func (t *Table) unbindLocked(a *Alloc, c *Chan) {
	t.peers.Compute(a.addrKey(c.Peer.Addr(), c.Peer.Port()), func(old *Chan, loaded bool) (*Chan, xsync.ComputeOp) {
		if loaded && old == c {
			return nil, xsync.DeleteOp
		}
		return old, xsync.CancelOp
	})
}

// Clear removes every permission and channel of a, which is ending, and refuses any that an
// event still in flight would add. It returns how many it removed.
func (t *Table) Clear(a *Alloc) (perms, chans int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dead = true
	for _, c := range a.perms {
		c.permitted.Store(false)
		t.ips.Delete(addrKey{tag: a.id << 16, ip: c.ip})
	}
	for _, c := range a.chans {
		c.gone.Store(true)
		t.chans.Delete(a.chanKey(c.Num))
		t.unbindLocked(a, c)
		t.ips.Delete(addrKey{tag: a.id << 16, ip: c.cell.ip})
	}
	perms, chans = len(a.perms), len(a.chans)
	a.perms, a.chans = nil, nil
	t.nPerms.Add(-int64(perms))
	t.nChans.Add(-int64(chans))
	return perms, chans
}

// Len returns the number of UDP allocations, peer IPs (with a permission or a channel) and
// channels in the table, as the maps count them.
func (t *Table) Len() (allocs, ips, chans int) {
	return t.byCl4.Size() + t.byCl6.Size(), t.ips.Size(), t.chans.Size()
}

// Counts returns the permissions and channels in the table, as Permit, Revoke, Bind, Unbind
// and Clear counted them.
func (t *Table) Counts() (perms, chans int64) {
	return t.nPerms.Load(), t.nChans.Load()
}

// Recheck applies a reloaded peer policy to a's permissions and channels: every peer IP that
// allowed reports false for stops relaying (Permitted and Chan.Permitted report false) while
// pion keeps the permission, and one allowed again relays again. A permission or channel
// made after the reload passed the new policy already. It returns how many of a's peer IPs
// are refused now. O(a's entries).
func (t *Table) Recheck(a *Alloc, allowed func(ip netip.Addr) bool) (refused int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	mark := func(c *ipCell) {
		r := !allowed(netip.AddrFrom16(c.ip).Unmap())
		c.refused.Store(r)
		if r {
			refused++
		}
	}
	for _, c := range a.perms { // a channel relays only to a permitted IP, so this is all
		mark(c)
	}
	return refused
}
