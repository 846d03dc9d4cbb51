//go:build linux

package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/avedge/avedge/relay/internal/sock"
)

// The fast-path table. It mirrors, for every allocation made through one of our UDP
// listeners, what pion decided: which channels are bound to which peers and which peer
// addresses have a permission. Workers read it on every packet without a lock (one atomic
// load of an immutable snapshot); the control plane (pion's EventHandler) replaces a snapshot
// when something changes. It is a plain table on purpose — client 5-tuple + channel → relay
// socket + peer, and relay socket + peer → channel — so that a kernel offload could mirror it
// into a BPF map.

// fastKey names an allocation by its client-side 5-tuple: which listen address (the
// transport is UDP) and the client's address.
type fastKey struct {
	lis    uint16
	client netip.AddrPort
}

// fastChan is one channel binding. Static after construction.
type fastChan struct {
	num     uint16
	peer    netip.AddrPort
	raw     sock.RawAddr
	refused bool // peer is one of the relay's own service ports (see Server.peerPortOK)
}

// allocState is an immutable snapshot of an allocation's channels and permissions.
type allocState struct {
	chans []*fastChan
	perms []netip.Addr
}

// fastAlloc is an allocation as the workers see it.
type fastAlloc struct {
	key       fastKey      // Static after construction.
	clientRaw sock.RawAddr // Static after construction.
	relay     *relayConn   // Static after construction.
	udp       bool         // client reached us on a UDP listener we own. Static.
	family    int          // metrics family index. Static.
	transport int          // metrics transport index. Static.
	userID    string       // Static after construction.
	state     atomic.Pointer[allocState]
}

func (a *fastAlloc) chanByNum(num uint16) *fastChan {
	st := a.state.Load()
	for _, c := range st.chans {
		if c.num == num {
			return c
		}
	}
	return nil
}

func (a *fastAlloc) chanByPeer(peer netip.AddrPort) *fastChan {
	st := a.state.Load()
	for _, c := range st.chans {
		if c.peer == peer {
			return c
		}
	}
	return nil
}

func (a *fastAlloc) permitted(ip netip.Addr) bool {
	st := a.state.Load()
	for _, p := range st.perms {
		if p == ip {
			return true
		}
	}
	return false
}

// fastTable holds every live allocation. Readers: lookup (any worker, lock-free).
// Writers: the EventHandler, serialised by mu.
type fastTable struct {
	mu   sync.Mutex
	byCl atomic.Pointer[map[fastKey]*fastAlloc] // replaced, never mutated
}

func newFastTable() *fastTable {
	t := &fastTable{}
	m := map[fastKey]*fastAlloc{}
	t.byCl.Store(&m)
	return t
}

func (t *fastTable) lookup(k fastKey) *fastAlloc {
	return (*t.byCl.Load())[k]
}

func (t *fastTable) insert(a *fastAlloc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.byCl.Load()
	m := make(map[fastKey]*fastAlloc, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[a.key] = a
	t.byCl.Store(&m)
}

func (t *fastTable) remove(k fastKey) *fastAlloc {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.byCl.Load()
	a, ok := old[k]
	if !ok {
		return nil
	}
	m := make(map[fastKey]*fastAlloc, len(old))
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
func (t *fastTable) updateLocked(a *fastAlloc, f func(st *allocState)) {
	old := a.state.Load()
	st := &allocState{
		chans: append([]*fastChan(nil), old.chans...),
		perms: append([]netip.Addr(nil), old.perms...),
	}
	f(st)
	a.state.Store(st)
}

func (t *fastTable) update(a *fastAlloc, f func(st *allocState)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.updateLocked(a, f)
}
