//go:build linux

package dataplane

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/avedge/avedge/relay/internal/sock"
)

// The fast-path table. It mirrors, for every allocation made through one of the relay's UDP
// listeners, what pion decided: which channels are bound to which peers and which peer
// addresses have a permission. Workers read it on every packet without a lock (one atomic
// load of an immutable snapshot); the control plane (pion's EventHandler, in package relay)
// replaces a snapshot when something changes. It is a plain table on purpose — client 5-tuple
// + channel → relay socket + peer, and relay socket + peer → channel — so that a kernel
// offload could mirror it into a BPF map.

// Key names an allocation by its client-side 5-tuple: which listen address (the transport is
// UDP) and the client's address.
type Key struct {
	Lis    uint16 // Listener.ID
	Client netip.AddrPort
}

// Chan is one channel binding. Static after construction.
type Chan struct {
	Num     uint16
	Peer    netip.AddrPort
	Raw     sock.RawAddr // Peer, ready to send to
	Refused bool         // the peer is one of the relay's own service ports: drop (policy)
}

// AllocState is an immutable snapshot of an allocation's channels and permissions.
type AllocState struct {
	Chans []*Chan
	Perms []netip.Addr
}

// Alloc is an allocation as the workers see it. Its fields are set before it is published
// (Table.Insert, Relay.Alloc) and static after; its state changes through Table.Update.
type Alloc struct {
	Key       Key          // UDP allocations only.
	ClientRaw sock.RawAddr // Key.Client, ready to send to. UDP allocations only.
	Relay     *Relay       // its relay socket.
	UDP       bool         // the client reached us on a UDP listener we own.
	state     atomic.Pointer[AllocState]
}

// NewAlloc returns an allocation of relay socket r with no channel and no permission.
func NewAlloc(r *Relay) *Alloc {
	a := &Alloc{Relay: r}
	a.state.Store(&AllocState{})
	return a
}

// ChanByNum returns the channel bound to number num, or nil.
func (a *Alloc) ChanByNum(num uint16) *Chan {
	st := a.state.Load()
	for _, c := range st.Chans {
		if c.Num == num {
			return c
		}
	}
	return nil
}

// ChanByPeer returns the channel bound to peer, or nil.
func (a *Alloc) ChanByPeer(peer netip.AddrPort) *Chan {
	st := a.state.Load()
	for _, c := range st.Chans {
		if c.Peer == peer {
			return c
		}
	}
	return nil
}

// Permitted reports whether ip has a permission.
func (a *Alloc) Permitted(ip netip.Addr) bool {
	st := a.state.Load()
	for _, p := range st.Perms {
		if p == ip {
			return true
		}
	}
	return false
}

// Table holds every live UDP allocation by Key. Readers: Lookup (any worker, lock-free).
// Writers: the control plane, serialised by mu, which also serialises every Update of an
// allocation's state (of UDP and stream allocations alike).
type Table struct {
	mu   sync.Mutex
	byCl atomic.Pointer[map[Key]*Alloc] // replaced, never mutated
}

// NewTable returns an empty table.
func NewTable() *Table {
	t := &Table{}
	m := map[Key]*Alloc{}
	t.byCl.Store(&m)
	return t
}

// Lookup returns the allocation of k, or nil. Lock-free; allocates nothing.
func (t *Table) Lookup(k Key) *Alloc {
	return (*t.byCl.Load())[k]
}

// Insert adds a under a.Key.
func (t *Table) Insert(a *Alloc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.byCl.Load()
	m := make(map[Key]*Alloc, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[a.Key] = a
	t.byCl.Store(&m)
}

// Remove takes the allocation of k out of the table and returns it (nil if none).
func (t *Table) Remove(k Key) *Alloc {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.byCl.Load()
	a, ok := old[k]
	if !ok {
		return nil
	}
	m := make(map[Key]*Alloc, len(old))
	for kk, v := range old {
		if kk != k {
			m[kk] = v
		}
	}
	t.byCl.Store(&m)
	return a
}

// updateLocked replaces a's state with the result of f applied to a copy of it.
// Callers hold t.mu.
func (t *Table) updateLocked(a *Alloc, f func(st *AllocState)) {
	old := a.state.Load()
	st := &AllocState{
		Chans: append([]*Chan(nil), old.Chans...),
		Perms: append([]netip.Addr(nil), old.Perms...),
	}
	f(st)
	a.state.Store(st)
}

// Update replaces a's state with the result of f applied to a copy of it. f runs with the
// table's lock held: it must not call back into the table.
func (t *Table) Update(a *Alloc, f func(st *AllocState)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked(a, f)
}
