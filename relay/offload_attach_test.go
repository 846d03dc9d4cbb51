//go:build linux

package relay

import (
	"net"
	"testing"

	"github.com/avedge/avedge/relay/internal/kfast"
)

// TestAttachMode: how the kernel fast path goes on each kind of interface for each choice. A
// veth takes the tc variant unless XDP is asked for (native XDP there loses every relayed
// packet when the far end has no XDP program, which the relay cannot see).
func TestAttachMode(t *testing.T) {
	lo := net.Interface{Name: "lo", Flags: net.FlagLoopback | net.FlagUp}
	eth := net.Interface{Name: "eth0", Flags: net.FlagUp}
	for _, tt := range []struct {
		ifi    net.Interface
		driver string
		a      OffloadAttach
		want   kfast.Mode
	}{
		{lo, "", OffloadAttachAuto, kfast.ModeTCX},
		{lo, "", OffloadAttachXDP, kfast.ModeTCX},
		{eth, "veth", OffloadAttachAuto, kfast.ModeTCX},
		{eth, "veth", OffloadAttachXDP, kfast.ModeNative},
		{eth, "veth", OffloadAttachXDPGeneric, kfast.ModeGeneric},
		{eth, "veth", OffloadAttachTC, kfast.ModeTCX},
		{eth, "virtio_net", OffloadAttachAuto, kfast.ModeAuto}, // native XDP, else tc (kfast.Attach)
		{eth, "virtio_net", OffloadAttachTC, kfast.ModeTCX},
	} {
		if got, why := attachMode(tt.ifi, tt.driver, tt.a); got != tt.want || why == "" {
			t.Errorf("%s (%s), %q: %v (%q), want %v and a reason", tt.ifi.Name, tt.driver, tt.a, got, why, tt.want)
		}
	}
	for in, want := range map[string]OffloadAttach{"": OffloadAttachAuto, "auto": OffloadAttachAuto, "xdp": OffloadAttachXDP, "xdp-generic": OffloadAttachXDPGeneric, "tc": OffloadAttachTC} {
		if got, err := ParseOffloadAttach(in); err != nil || got != want {
			t.Errorf("ParseOffloadAttach(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseOffloadAttach("dpdk"); err == nil {
		t.Error("ParseOffloadAttach accepted \"dpdk\"")
	}
}
