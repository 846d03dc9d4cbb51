//go:build linux

package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// testRelay is the relay socket of every test allocation (the table never reads it).
var testRelay = &Relay{}

// newTestAlloc returns a UDP allocation of client i on listener 0, not yet inserted.
func newTestAlloc(t *Table, i int) *Alloc {
	a := t.NewAlloc(testRelay)
	a.Key = Key{Client: netip.AddrPortFrom(addrN(i), uint16(1024+i%60000))}
	a.UDP = true
	return a
}

func newChan(num uint16, peer netip.AddrPort) *Chan {
	c := &Chan{Num: num, Peer: peer}
	c.Raw.Set(peer)
	return c
}

// TestTableModel runs random permission and channel changes against a plain model and checks
// after each step that every lookup and every count agrees with it: counts stay exact over
// many add/remove cycles, and no allocation is lost or kept after it was removed.
func TestTableModel(t *testing.T) {
	type model struct {
		perms map[netip.Addr]bool
		chans map[uint16]netip.AddrPort
	}
	rng := rand.New(rand.NewPCG(1, 2))
	tab := NewTable()
	const nAllocs, nIPs, nChans = 8, 6, 5
	allocs := make([]*Alloc, nAllocs)
	models := make([]*model, nAllocs)
	live := make([]bool, nAllocs)
	peer := func(j int) netip.AddrPort { return netip.AddrPortFrom(addrN(100+j%nIPs), uint16(5000+j)) }
	check := func(step int) {
		t.Helper()
		wantAllocs, wantPerms, wantChans, wantIPs := 0, 0, 0, 0
		for i, a := range allocs {
			if a == nil {
				continue
			}
			m := models[i]
			if got := tab.Lookup(a.Key); (got == a) != live[i] {
				t.Fatalf("step %d: alloc %d: Lookup = %p, live %v", step, i, got, live[i])
			}
			if live[i] {
				wantAllocs++
			}
			for j := 0; j < nIPs; j++ {
				ip := addrN(100 + j)
				if a.Permitted(ip) != m.perms[ip] {
					t.Fatalf("step %d: alloc %d: Permitted(%v) = %v, want %v", step, i, ip, !m.perms[ip], m.perms[ip])
				}
			}
			for j := 0; j < 2*nChans; j++ {
				p := peer(j)
				var want *Chan
				for num, q := range m.chans {
					if q == p {
						want = a.ChanByNum(num)
					}
				}
				if got := a.ChanFromPeer(p); got != want {
					t.Fatalf("step %d: alloc %d: ChanFromPeer(%v) = %v, want %v", step, i, p, got, want)
				}
			}
			for n := uint16(0); n < nChans; n++ {
				c := a.ChanByNum(0x4000 + n)
				p, ok := m.chans[0x4000+n]
				if (c != nil) != ok || (ok && c.Peer != p) {
					t.Fatalf("step %d: alloc %d: ChanByNum(%#x) = %v, want %v (%v)", step, i, 0x4000+n, c, p, ok)
				}
				if ok && (a.ChanByPeer(p) != c || a.ChanFromPeer(p) != c) {
					t.Fatalf("step %d: alloc %d: ChanByPeer or ChanFromPeer(%v) != ChanByNum", step, i, p)
				}
			}
			np, nc := a.Counts()
			if np != len(m.perms) || nc != len(m.chans) {
				t.Fatalf("step %d: alloc %d: Counts = %d, %d; want %d, %d", step, i, np, nc, len(m.perms), len(m.chans))
			}
			wantPerms += len(m.perms)
			wantChans += len(m.chans)
			ips := map[netip.Addr]bool{}
			for ip := range m.perms {
				ips[ip] = true
			}
			for _, p := range m.chans {
				ips[p.Addr()] = true
				if c := a.ChanByPeer(p); c.Permitted() != m.perms[p.Addr()] {
					t.Fatalf("step %d: alloc %d: channel to %v: Permitted = %v, want %v", step, i, p, c.Permitted(), m.perms[p.Addr()])
				}
			}
			wantIPs += len(ips)
		}
		gotA, gotP, gotC := tab.Len()
		cp, cc := tab.Counts()
		if gotA != wantAllocs || gotP != wantIPs || gotC != wantChans || int(cp) != wantPerms || int(cc) != wantChans {
			t.Fatalf("step %d: Len = %d, %d, %d; Counts = %d, %d; want %d allocations, %d peer IPs, %d channels, %d permissions",
				step, gotA, gotP, gotC, cp, cc, wantAllocs, wantIPs, wantChans, wantPerms)
		}
		if n := tab.peers.Size(); n != wantChans {
			t.Fatalf("step %d: %d channels by peer, want %d", step, n, wantChans)
		}
	}
	for step := 0; step < 20000; step++ {
		i := rng.IntN(nAllocs)
		a, m := allocs[i], models[i]
		if a == nil || !live[i] {
			// A new allocation of the same client: the old one's entries are gone.
			a = newTestAlloc(tab, i)
			allocs[i], models[i], live[i] = a, &model{perms: map[netip.Addr]bool{}, chans: map[uint16]netip.AddrPort{}}, true
			tab.Insert(a)
			check(step)
			continue
		}
		switch op := rng.IntN(20); {
		case op < 6:
			ip := addrN(100 + rng.IntN(nIPs))
			if got, want := tab.Permit(a, ip), !m.perms[ip]; got != want {
				t.Fatalf("step %d: Permit(%v) = %v, want %v", step, ip, got, want)
			}
			m.perms[ip] = true
		case op < 11:
			ip := addrN(100 + rng.IntN(nIPs))
			if got, want := tab.Revoke(a, ip), m.perms[ip]; got != want {
				t.Fatalf("step %d: Revoke(%v) = %v, want %v", step, ip, got, want)
			}
			delete(m.perms, ip)
		case op < 15:
			n := 0x4000 + uint16(rng.IntN(nChans))
			p := peer(int(n-0x4000) + nChans*rng.IntN(2))
			_, bound := m.chans[n]
			inUse := false
			for _, q := range m.chans {
				inUse = inUse || q == p
			}
			if bound || inUse { // pion refuses both before an event
				continue
			}
			if !tab.Bind(a, newChan(n, p)) {
				t.Fatalf("step %d: Bind(%#x) refused", step, n)
			}
			m.chans[n] = p
		case op < 19:
			n := 0x4000 + uint16(rng.IntN(nChans))
			_, bound := m.chans[n]
			if got := tab.Unbind(a, n); got != bound {
				t.Fatalf("step %d: Unbind(%#x) = %v, want %v", step, n, got, bound)
			}
			delete(m.chans, n)
		default:
			if !tab.Remove(a) {
				t.Fatalf("step %d: Remove of a live allocation failed", step)
			}
			np, nc := tab.Clear(a)
			if np != len(m.perms) || nc != len(m.chans) {
				t.Fatalf("step %d: Clear = %d, %d; want %d, %d", step, np, nc, len(m.perms), len(m.chans))
			}
			if tab.Permit(a, addrN(100)) || tab.Bind(a, newChan(0x4000, peer(0))) {
				t.Fatalf("step %d: an ended allocation took a permission or a channel", step)
			}
			if tab.Remove(a) {
				t.Fatalf("step %d: removed twice", step)
			}
			clear(m.perms)
			clear(m.chans)
			live[i] = false
		}
		check(step)
	}
}

// TestTableRemoveKeepsSuccessor: removing an ended allocation must not take out a newer one of
// the same client 5-tuple.
func TestTableRemoveKeepsSuccessor(t *testing.T) {
	tab := NewTable()
	old, nw := newTestAlloc(tab, 1), newTestAlloc(tab, 1)
	tab.Insert(old)
	tab.Insert(nw)
	if tab.Remove(old) {
		t.Fatal("Remove of a replaced allocation reported success")
	}
	if tab.Lookup(nw.Key) != nw {
		t.Fatal("the newer allocation was removed")
	}
}

// TestTableLookupsAllocateNothing: every lookup a worker makes per packet, IPv4 and IPv6.
func TestTableLookupsAllocateNothing(t *testing.T) {
	tab := NewTable()
	for _, client := range []string{"192.0.2.1:5000", "[2001:db8::1]:5000"} {
		a := tab.NewAlloc(&Relay{})
		a.Key = Key{Lis: 1, Client: netip.MustParseAddrPort(client)}
		peer := netip.AddrPortFrom(a.Key.Client.Addr().Next(), 7000)
		tab.Insert(a)
		tab.Permit(a, peer.Addr())
		tab.Bind(a, newChan(0x4001, peer))
		n := testing.AllocsPerRun(1000, func() {
			b := tab.Lookup(a.Key)
			if b.ChanByNum(0x4001) == nil || !b.Permitted(peer.Addr()) || b.ChanByPeer(peer) == nil {
				panic("lookup failed")
			}
		})
		if n != 0 {
			t.Fatalf("%s: lookups allocate %.1f times", client, n)
		}
	}
}

// TestTableConcurrent: workers look up while the control plane adds and removes (run under
// -race). A reader must always see either nothing or a whole, consistent entry.
func TestTableConcurrent(t *testing.T) {
	tab := NewTable()
	const n = 64
	allocs := make([]*Alloc, n)
	for i := range allocs {
		allocs[i] = newTestAlloc(tab, i)
		tab.Insert(allocs[i])
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				a := tab.Lookup(allocs[k%n].Key)
				if a == nil {
					continue
				}
				if c := a.ChanByNum(0x4001); c != nil && (c.Num != 0x4001 || !c.Peer.IsValid()) {
					panic("torn channel")
				}
				_ = a.Permitted(addrN(7))
			}
		}()
	}
	for round := 0; round < 200; round++ {
		for _, a := range allocs {
			peer := netip.AddrPortFrom(addrN(7), uint16(round))
			tab.Permit(a, peer.Addr())
			tab.Bind(a, newChan(0x4001, peer))
		}
		for _, a := range allocs {
			tab.Unbind(a, 0x4001)
			tab.Revoke(a, addrN(7))
		}
	}
	stop.Store(true)
	wg.Wait()
	if _, p, c := tab.Len(); p != 0 || c != 0 {
		t.Fatalf("left %d permissions and %d channels", p, c)
	}
}

// populate fills tab with n live UDP allocations, each with one permission and one channel.
func populate(tab *Table, n int) []*Alloc {
	out := make([]*Alloc, n)
	for i := range out {
		a := newTestAlloc(tab, i)
		peer := netip.AddrPortFrom(addrN(i+1), 9000)
		tab.Insert(a)
		tab.Permit(a, peer.Addr())
		tab.Bind(a, newChan(0x4000, peer))
		out[i] = a
	}
	return out
}

var liveSizes = []int{1000, 10000, 100000}

// BenchmarkTableControl is the control plane's cost per event with n allocations live: it
// should not grow with n.
func BenchmarkTableControl(b *testing.B) {
	for _, n := range liveSizes {
		tab := NewTable()
		populate(tab, n)
		b.Run(fmt.Sprintf("insert+remove/live=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				a := newTestAlloc(tab, n+i%1000)
				tab.Insert(a)
				tab.Remove(a)
				tab.Clear(a)
			}
		})
		b.Run(fmt.Sprintf("permit+revoke/live=%d", n), func(b *testing.B) {
			a := newTestAlloc(tab, n+1)
			tab.Insert(a)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ip := addrN(i % 64)
				tab.Permit(a, ip)
				tab.Revoke(a, ip)
			}
		})
		b.Run(fmt.Sprintf("bind+unbind/live=%d", n), func(b *testing.B) {
			a := newTestAlloc(tab, n+2)
			tab.Insert(a)
			c := newChan(0x4001, netip.MustParseAddrPort("192.0.2.9:9"))
			b.ReportAllocs()
			for b.Loop() {
				tab.Bind(a, c)
				tab.Unbind(a, 0x4001)
			}
		})
	}
}

// BenchmarkTableLookup is a worker's lookups for one ChannelData from a client (allocation,
// channel, the channel's permission) with n allocations live, taken in turn (so with many
// live, most are cache misses).
func BenchmarkTableLookup(b *testing.B) {
	for _, n := range append([]int{1}, liveSizes...) {
		tab := NewTable()
		allocs := populate(tab, n)
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				k := allocs[i%n].Key
				a := tab.Lookup(k)
				c := a.ChanByNum(0x4000)
				if !c.Permitted() {
					b.Fatal("no permission")
				}
			}
		})
	}
}

// BenchmarkTableMemory reports the heap the table's structures take per allocation with one
// permission and one channel (the Alloc, the Chan and the map entries; not the relay
// socket's dataplane.Relay).
func BenchmarkTableMemory(b *testing.B) {
	const n = 100000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tab := NewTable()
		allocs := populate(tab, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/allocation")
		runtime.KeepAlive(allocs)
		runtime.KeepAlive(tab)
	}
}

// Recheck applies a reloaded policy to granted permissions: a refused IP stops relaying
// (directly and through its channel) without losing the permission, one allowed again
// relays again, and a permission granted after the reload is open whatever the last
// Recheck said of its IP.
func TestTableRecheck(t *testing.T) {
	tab := NewTable()
	a := newTestAlloc(tab, 1)
	tab.Insert(a)
	refusedIP, keptIP := addrN(7), addrN(8)
	tab.Permit(a, refusedIP)
	tab.Permit(a, keptIP)
	ch := newChan(0x4000, netip.AddrPortFrom(refusedIP, 9))
	tab.Bind(a, ch)

	deny := func(ip netip.Addr) bool { return ip != refusedIP }
	if n := tab.Recheck(a, deny); n != 1 {
		t.Fatalf("Recheck refused %d, want 1", n)
	}
	if a.Permitted(refusedIP) || ch.Permitted() {
		t.Fatal("a refused IP still relays")
	}
	if !a.Permitted(keptIP) {
		t.Fatal("an allowed IP stopped relaying")
	}
	if perms, chans := a.Counts(); perms != 2 || chans != 1 {
		t.Fatalf("counts %d/%d after Recheck, want the permissions and channel kept (2/1)", perms, chans)
	}
	if n := tab.Recheck(a, func(netip.Addr) bool { return true }); n != 0 || !a.Permitted(refusedIP) || !ch.Permitted() {
		t.Fatal("an IP allowed again does not relay")
	}
	// Refused, then the permission ends and is granted anew (by a policy that allows it).
	tab.Recheck(a, deny)
	tab.Revoke(a, refusedIP)
	tab.Permit(a, refusedIP)
	if !a.Permitted(refusedIP) {
		t.Fatal("a permission granted after the reload is refused by the reload before")
	}
}
