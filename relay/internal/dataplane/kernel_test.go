//go:build linux

package dataplane

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/avedge/avedge/relay/internal/kfast"
)

// TestKernelMirror: the program's maps change exactly when the table does, for every
// operation that changes an offloaded allocation, and not for one that stays in user space.
func TestKernelMirror(t *testing.T) {
	off, err := kfast.New(kfast.Config{Slots: 8})
	if errors.Is(err, kfast.ErrUnavailable) {
		t.Skipf("BPF unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	lis := netip.MustParseAddrPort("10.1.0.1:3478")
	tb := NewTable()
	tb.SetKernel(NewKernel(off, []netip.AddrPort{lis, {}}, nil))

	newAlloc := func(listener uint16, capped bool) *Alloc {
		var bps int64
		if capped {
			bps = 1000
		}
		a := tb.NewAlloc(NewRelay(-1, 1, bps))
		a.UDP = true
		a.Key = Key{Lis: listener, Client: netip.MustParseAddrPort("10.1.0.2:40000")}
		a.Local = netip.MustParseAddrPort("10.1.0.1:50000")
		tb.Insert(a)
		return a
	}
	peer := netip.MustParseAddrPort("10.1.0.3:40001")
	peerIP := peer.Addr()
	kc := func(a *Alloc, num uint16) kfast.Channel {
		return kfast.Channel{Slot: a.kslot - 1, Num: num, Client: a.Key.Client, Listen: lis, Relay: a.Local, Peer: peer}
	}

	a := newAlloc(0, false)
	if !a.Offloaded() {
		t.Fatal("allocation on a served listener, uncapped: not offloaded")
	}
	slot := a.kslot - 1
	tb.Permit(a, peerIP)
	if !off.Permitted(slot, peerIP) {
		t.Fatal("Permit: no permission in the kernel")
	}
	c := &Chan{Num: 0x4001, Peer: peer}
	tb.Bind(a, c)
	if !off.HasChannel(kc(a, 0x4001)) {
		t.Fatal("Bind: no channel in the kernel")
	}
	refused := &Chan{Num: 0x4002, Peer: netip.MustParseAddrPort("10.1.0.1:3478"), Refused: true}
	tb.Bind(a, refused)
	if n, _ := off.Entries(); n != 1 {
		t.Fatalf("a channel to a refused service port was offloaded: %d channels in the kernel", n)
	}

	tb.Recheck(a, func(netip.Addr) bool { return false })
	if off.Permitted(slot, peerIP) {
		t.Fatal("Recheck refusing the peer: permission still in the kernel")
	}
	tb.Recheck(a, func(netip.Addr) bool { return true })
	if !off.Permitted(slot, peerIP) {
		t.Fatal("Recheck allowing the peer again: no permission in the kernel")
	}
	tb.Revoke(a, peerIP)
	if off.Permitted(slot, peerIP) {
		t.Fatal("Revoke: permission still in the kernel")
	}
	if !off.HasChannel(kc(a, 0x4001)) {
		t.Fatal("Revoke removed the channel (the program must see it to drop for no permission)")
	}
	tb.Permit(a, peerIP)
	tb.Unbind(a, 0x4001)
	if off.HasChannel(kc(a, 0x4001)) {
		t.Fatal("Unbind: channel still in the kernel")
	}
	tb.Bind(a, &Chan{Num: 0x4003, Peer: peer})
	if !off.HasChannel(kc(a, 0x4003)) {
		t.Fatal("second Bind: no channel in the kernel")
	}
	tb.Remove(a)
	tb.Clear(a)
	if n, p := off.Entries(); n != 0 || p != 0 {
		t.Fatalf("after Clear: %d channels, %d permissions left in the kernel", n, p)
	}
	if a.Offloaded() {
		t.Fatal("after Clear: still offloaded")
	}
	tb.Permit(a, peerIP) // an event in flight after the allocation ended
	if _, p := off.Entries(); p != 0 {
		t.Fatal("a permission of a cleared allocation reached the kernel")
	}

	if b := newAlloc(0, true); !b.Offloaded() {
		t.Fatal("allocation with a bandwidth cap not offloaded")
	}
	if b := newAlloc(1, false); b.Offloaded() {
		t.Fatal("allocation on a listener the kernel does not serve offloaded")
	}
	v6 := tb.NewAlloc(NewRelay(-1, 1, 0))
	v6.UDP = true
	v6.Key = Key{Lis: 0, Client: netip.MustParseAddrPort("[fd00::2]:40000")}
	v6.Local = netip.MustParseAddrPort("[fd00::1]:50000")
	tb.Insert(v6)
	if v6.Offloaded() {
		t.Fatal("IPv6 client on an IPv4 listener offloaded")
	}
}
