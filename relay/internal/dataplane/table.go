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
//	(listener, client address)  → allocation   UDP allocations only
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

// clientKey is Key as the table stores it. IPv4 addresses are in their IPv4-mapped IPv6 form
// (so that a mapped and a plain address name the same client); zones are not kept.
type clientKey struct {
	ip   [16]byte
	port uint16
	lis  uint16
}

func (k Key) flat() clientKey {
	return clientKey{ip: k.Client.Addr().As16(), port: k.Client.Port(), lis: k.Lis}
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
// channel number in the lower 16. An integer key: xsync hashes it without maphash.
type chanKey uint64

func (a *Alloc) chanKey(num uint16) chanKey { return chanKey(a.id<<16 | uint64(num)) }

// Chan is one channel binding. Static after construction but for idx.
type Chan struct {
	Num     uint16
	Peer    netip.AddrPort
	Raw     sock.RawAddr // Peer, ready to send to
	Refused bool         // the peer is one of the relay's own service ports: drop (policy)
	idx     int32        // index in its allocation's chans. Guarded by the allocation's mu; workers never read it.
}

// Alloc is an allocation as the workers see it. Its exported fields are set before it is
// published (Table.Insert, Relay.Alloc) and static after; its permissions and channels change
// through Table.Permit, Revoke, Bind, Unbind and Clear.
type Alloc struct {
	Key       Key          // UDP allocations only.
	ClientRaw sock.RawAddr // Key.Client, ready to send to. UDP allocations only.
	Relay     *Relay       // its relay socket.
	UDP       bool         // the client reached us on a UDP listener we own.
	id        uint64       // names it in the table's keys; never reused. Static.
	t         *Table       // Static.

	// The control plane's own record of the allocation's entries, so that Clear removes
	// them all and the caps can count them. Workers never read these.
	mu    sync.Mutex
	perms [][16]byte // permitted peer IPs; entry i is the one whose perms value is i. Guarded by mu.
	chans []*Chan    // bound channels; chans[c.idx] == c. Guarded by mu.
	dead  bool       // set by Clear: nothing is added after. Guarded by mu.
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

// Permitted reports whether ip has a permission. Lock-free; allocates nothing.
func (a *Alloc) Permitted(ip netip.Addr) bool {
	_, ok := a.t.perms.Load(a.addrKey(ip, 0))
	return ok
}

// Counts returns how many permissions and channels a has.
func (a *Alloc) Counts() (perms, chans int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.perms), len(a.chans)
}

// Table holds every live allocation's permissions and channels, and the UDP allocations by
// Key. Readers: Lookup and the Alloc lookups (any worker, lock-free). Writers: the control
// plane; changes to one allocation are serialised by its mu, and the maps lock themselves.
type Table struct {
	byCl   *xsync.Map[clientKey, *Alloc]
	perms  *xsync.Map[addrKey, int32] // value: index in the allocation's perms
	chans  *xsync.Map[chanKey, *Chan]
	peers  *xsync.Map[addrKey, *Chan]
	nextID atomic.Uint64
	nPerms atomic.Int64 // permissions in the table
	nChans atomic.Int64 // channels in the table
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		byCl:  xsync.NewMap[clientKey, *Alloc](),
		perms: xsync.NewMap[addrKey, int32](),
		chans: xsync.NewMap[chanKey, *Chan](),
		peers: xsync.NewMap[addrKey, *Chan](),
	}
}

// Lookup returns the UDP allocation of k, or nil. Lock-free; allocates nothing.
func (t *Table) Lookup(k Key) *Alloc {
	a, _ := t.byCl.Load(k.flat())
	return a
}

// Insert publishes a under a.Key (UDP allocations), replacing any allocation there.
func (t *Table) Insert(a *Alloc) {
	t.byCl.Store(a.Key.flat(), a)
}

// Remove takes a out of the table's allocations by Key, if it is the one there. It reports
// whether it was.
func (t *Table) Remove(a *Alloc) bool {
	removed := false
	t.byCl.Compute(a.Key.flat(), func(old *Alloc, loaded bool) (*Alloc, xsync.ComputeOp) {
		if loaded && old == a {
			removed = true
			return nil, xsync.DeleteOp
		}
		return old, xsync.CancelOp
	})
	return removed
}

// Permit installs a permission for ip on a. It reports whether it is new (false: a had one,
// or a was cleared).
func (t *Table) Permit(a *Alloc, ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dead {
		return false
	}
	k := a.addrKey(ip, 0)
	if _, loaded := t.perms.LoadOrStore(k, int32(len(a.perms))); loaded {
		return false
	}
	a.perms = append(a.perms, k.ip)
	t.nPerms.Add(1)
	return true
}

// Revoke removes a's permission for ip. It reports whether there was one.
func (t *Table) Revoke(a *Alloc, ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := t.perms.LoadAndDelete(a.addrKey(ip, 0))
	if !ok {
		return false
	}
	// The last entry takes the removed one's place (and its index in the map).
	last := int32(len(a.perms) - 1)
	if i != last {
		moved := a.perms[last]
		a.perms[i] = moved
		t.perms.Store(addrKey{tag: a.id << 16, ip: moved}, i)
	}
	a.perms = a.perms[:last]
	if last == 0 {
		a.perms = nil
	}
	t.nPerms.Add(-1)
	return true
}

// Bind adds channel c to a. It reports whether it is new (false: the number is bound, or a
// was cleared).
func (t *Table) Bind(a *Alloc, c *Chan) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dead {
		return false
	}
	if _, loaded := t.chans.LoadOrStore(a.chanKey(c.Num), c); loaded {
		return false
	}
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
	for _, ip := range a.perms {
		t.perms.Delete(addrKey{tag: a.id << 16, ip: ip})
	}
	for _, c := range a.chans {
		t.chans.Delete(a.chanKey(c.Num))
		t.unbindLocked(a, c)
	}
	perms, chans = len(a.perms), len(a.chans)
	a.perms, a.chans = nil, nil
	t.nPerms.Add(-int64(perms))
	t.nChans.Add(-int64(chans))
	return perms, chans
}

// Len returns the number of UDP allocations, permissions and channels in the table, as the
// maps count them.
func (t *Table) Len() (allocs, perms, chans int) {
	return t.byCl.Size(), t.perms.Size(), t.chans.Size()
}

// Counts returns the permissions and channels in the table, as Permit, Revoke, Bind, Unbind
// and Clear counted them.
func (t *Table) Counts() (perms, chans int64) {
	return t.nPerms.Load(), t.nChans.Load()
}
