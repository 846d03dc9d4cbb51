//go:build linux

package dataplane

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/kfast"
)

// The kernel fast path's mirror of the table. When the relay runs one (Table.SetKernel), the
// table copies each change of an offloaded allocation into the program's maps as it makes it,
// under the allocation's mu, so the maps change exactly when the table does:
//
//	Table.Insert  → a slot of per-CPU counters, if the allocation can be offloaded
//	Table.Permit  → the peer IP's permission          Table.Revoke  → removed
//	Table.Bind    → the channel, both directions      Table.Unbind  → removed
//	Table.Recheck → permissions the reloaded peer policy refuses removed, allowed again put back
//	Table.Clear   → everything of the allocation removed, its counters retired
//
// An allocation is offloaded when its client reached a UDP listener the kernel path serves (an
// address on an interface the program is attached to, or a wildcard one: the program then
// answers from the route's preferred source, as the listener's socket does) and the client, listen and
// relay addresses are of one family. Its bandwidth cap (max-bps) is a second token bucket in
// the kernel, of the same rate and burst: packets of one allocation split between the paths
// (the first ones, before the neighbours are known) may pass both buckets' worth. A channel to a peer of the other family, or to one of the
// relay's own service ports (Chan.Refused), stays in user space. The program drops what the
// RFC says to drop exactly as classify does (no permission, short ChannelData) and passes
// everything else up to the workers, so counters and drop reasons are the same whichever path
// a packet took.

// Kernel is the kernel fast path as the table drives it.
type Kernel struct {
	off *kfast.Offload   // Static.
	log *slog.Logger     // Static.
	lis []netip.AddrPort // served listen address by Listener.ID; invalid: not served. Static after SetKernel.

	closed atomic.Bool // set by Close: the maps are gone, changes are no longer mirrored

	mu      sync.Mutex
	live    map[uint32]struct{}    // offloaded allocations' slots. Guarded by mu.
	retired kfast.Counters         // what ended allocations relayed. Guarded by mu.
	drops   [kfast.NumDrops]uint64 // the program's drops when it was closed. Guarded by mu.
}

// NewKernel returns the mirror for off. lis holds, by Listener.ID, the listen addresses whose
// traffic the program sees (others invalid), wildcards included.
func NewKernel(off *kfast.Offload, lis []netip.AddrPort, log *slog.Logger) *Kernel {
	if log == nil {
		log = slog.Default()
	}
	return &Kernel{off: off, log: log, lis: lis, live: map[uint32]struct{}{}}
}

// Close stops mirroring (the table keeps working for the user-space loops) and detaches and
// frees the program: what the kernel relayed is still counted.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Swap(true) {
		return nil
	}
	// Counters stay readable only while the maps are open: fold the live ones in now.
	for s := range k.live {
		if c, err := k.off.Counters(s); err == nil {
			k.retired = k.retired.Add(c)
		}
		delete(k.live, s)
	}
	k.drops, _ = k.off.Drops()
	return k.off.Close()
}

// SetKernel makes t mirror its offloadable allocations into k. Call it before the first
// Insert.
func (t *Table) SetKernel(k *Kernel) { t.k = k }

// Offloaded reports whether a's channels are relayed in the kernel.
func (a *Alloc) Offloaded() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.kslot != 0
}

// kernelInsertLocked gives a a slot if it can be offloaded. Callers hold a.mu.
func (t *Table) kernelInsertLocked(a *Alloc) {
	k := t.k
	if k == nil || k.closed.Load() || !a.UDP || a.kslot != 0 || a.dead {
		return
	}
	lis := k.listen(a)
	v4 := a.Key.Client.Addr().Unmap().Is4()
	if !lis.IsValid() || !a.Local.IsValid() || lis.Addr().Unmap().Is4() != v4 || a.Local.Addr().Unmap().Is4() != v4 {
		return
	}
	s, err := k.off.NewSlot(a.Relay.Rate())
	if err != nil {
		k.log.Warn("kernel fast path: allocation stays in user space", "client", a.Key.Client.String(), "err", err)
		return
	}
	k.mu.Lock()
	k.live[s] = struct{}{}
	k.mu.Unlock()
	a.kslot = s + 1
}

// listen returns the listen address a's client sends to as the program keys it: a wildcard
// listener's is the wildcard of the client's family (a dual-stack [::] listener sees IPv4
// clients too). Invalid: not served.
func (k *Kernel) listen(a *Alloc) netip.AddrPort {
	if int(a.Key.Lis) >= len(k.lis) {
		return netip.AddrPort{}
	}
	lis := k.lis[a.Key.Lis]
	if lis.IsValid() && lis.Addr().IsUnspecified() {
		any := netip.IPv6Unspecified()
		if a.Key.Client.Addr().Unmap().Is4() {
			any = netip.IPv4Unspecified()
		}
		lis = netip.AddrPortFrom(any, lis.Port())
	}
	return lis
}

// kchan is c as the program keys it. Callers hold a.mu and a.kslot != 0.
func (t *Table) kchan(a *Alloc, c *Chan) kfast.Channel {
	return kfast.Channel{Slot: a.kslot - 1, Num: c.Num, Client: a.Key.Client, Listen: t.k.listen(a), Relay: a.Local, Peer: c.Peer}
}

// kernelBindLocked installs c. Callers hold a.mu.
func (t *Table) kernelBindLocked(a *Alloc, c *Chan) {
	if a.kslot == 0 || c.Refused || t.k.closed.Load() {
		return
	}
	if err := t.k.off.PutChannel(t.kchan(a, c)); err != nil && err != kfast.ErrFamily {
		t.k.log.Warn("kernel fast path: channel stays in user space", "client", a.Key.Client.String(), "peer", c.Peer.String(), "err", err)
	}
}

// kernelUnbindLocked removes c. Callers hold a.mu.
func (t *Table) kernelUnbindLocked(a *Alloc, c *Chan) {
	if a.kslot == 0 || c.Refused || t.k.closed.Load() {
		return
	}
	if err := t.k.off.DeleteChannel(t.kchan(a, c)); err != nil && err != kfast.ErrFamily {
		t.k.log.Warn("kernel fast path: remove channel", "client", a.Key.Client.String(), "err", err)
	}
}

// kernelPermLocked makes the program's permission for c's IP what c.open() says. Callers hold
// a.mu.
func (t *Table) kernelPermLocked(a *Alloc, c *ipCell) {
	if a.kslot == 0 || t.k.closed.Load() {
		return
	}
	ip := netip.AddrFrom16(c.ip).Unmap()
	var err error
	if c.open() {
		err = t.k.off.Permit(a.kslot-1, ip)
	} else {
		err = t.k.off.Revoke(a.kslot-1, ip)
	}
	if err != nil {
		t.k.log.Warn("kernel fast path: permission", "client", a.Key.Client.String(), "peer", ip.String(), "err", err)
	}
}

// kernelClearLocked removes a's channels and permissions (still in a.chans and a.perms) and
// retires its slot. Callers hold a.mu.
func (t *Table) kernelClearLocked(a *Alloc) {
	if a.kslot == 0 {
		return
	}
	k, s := t.k, a.kslot-1
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.closed.Load() { // else Close counted it
		for _, c := range a.chans {
			t.kernelUnbindLocked(a, c)
		}
		for _, c := range a.perms {
			_ = k.off.Revoke(s, netip.AddrFrom16(c.ip).Unmap())
		}
		for _, c := range a.chans { // a channel's IP may have lost its permission before
			_ = k.off.Revoke(s, c.Peer.Addr())
		}
		if last, err := k.off.Counters(s); err == nil {
			k.retired = k.retired.Add(last)
		}
		delete(k.live, s)
		k.off.FreeSlot(s)
	}
	a.kslot = 0
}

// KernelTraffic returns what the kernel fast path relayed for a, by direction (zero when a is
// not offloaded): the share of a's traffic its Relay.Traffic does not count.
func (a *Alloc) KernelTraffic() (out [metrics.NumDirections]metrics.Counter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := a.t.k
	if a.kslot == 0 || k == nil || k.closed.Load() {
		return out
	}
	c, err := k.off.Counters(a.kslot - 1)
	if err != nil {
		return out
	}
	out[metrics.ClientToPeer] = metrics.Counter{Packets: c.C2PPackets, Bytes: c.C2PBytes}
	out[metrics.PeerToClient] = metrics.Counter{Packets: c.P2CPackets, Bytes: c.P2CBytes}
	return out
}

// Counters returns what the program relayed (ended allocations included), and its drops by
// reason.
func (k *Kernel) Counters() (kfast.Counters, [kfast.NumDrops]uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Load() {
		return k.retired, k.drops
	}
	sum := k.retired
	for s := range k.live {
		if c, err := k.off.Counters(s); err == nil {
			sum = sum.Add(c)
		}
	}
	drops, _ := k.off.Drops()
	return sum, drops
}

// AddTo adds what the program relayed to sn's channel traffic (and to its Kernel share) and
// its drops to sn's Drops, so the relay's series count every packet whichever path took it.
func (k *Kernel) AddTo(sn *metrics.Snapshot) {
	c, drops := k.Counters()
	add := func(d metrics.Direction, packets, bytes uint64) {
		sn.Traffic[d][metrics.PathChannel].Packets += packets
		sn.Traffic[d][metrics.PathChannel].Bytes += bytes
		sn.Kernel[d].Packets += packets
		sn.Kernel[d].Bytes += bytes
	}
	add(metrics.ClientToPeer, c.C2PPackets, c.C2PBytes)
	add(metrics.PeerToClient, c.P2CPackets, c.P2CBytes)
	for r, n := range map[kfast.DropReason]DropReason{kfast.DropNoPermission: DropNoPermission, kfast.DropMalformed: DropMalformed, kfast.DropQuota: DropQuota} {
		if v := drops[r]; v > 0 {
			sn.Drops[n.String()] += v
		}
	}
}
