//go:build linux

package relay

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/avedge/avedge/relay/internal/uring"
)

func TestDataPathChoice(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	base := Config{Listeners: []ListenerConfig{{Network: UDP, Addr: lo}}, Logger: testLogger(t), Workers: 1}

	for in, want := range map[string]DataPath{"": DataPathAuto, "auto": DataPathAuto, "epoll": DataPathEpoll, "io_uring": DataPathIOUring, "offload": DataPathOffload} {
		if got, err := ParseDataPath(in); err != nil || got != want {
			t.Errorf("ParseDataPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}

	bad := base
	bad.DataPath = "dpdk"
	if s, err := New(bad); err == nil {
		s.Close()
		t.Fatal("New accepted data path \"dpdk\"")
	} else if !strings.Contains(err.Error(), "dpdk") {
		t.Fatalf("error %q does not name the bad data path", err)
	}

	// Data path auto leaves a loopback listener to user space, naming why; offload would
	// serve it with the tc variant (planned here, not attached: tests attach only inside
	// namespaces they make, as TestKernelFastPath does).
	s := startServerOn(t, DataPathAuto, nil)
	if s.kernel != nil {
		t.Fatal("data path auto attached the kernel fast path to loopback")
	}
	if plan, err := s.planKernel(false, false); err != nil {
		t.Fatal(err)
	} else if len(plan.ifaces) != 0 || !strings.Contains(strings.Join(plan.why, "; "), "loopback") {
		t.Fatalf("auto's plan on loopback: interfaces %v, why %q; want none, saying loopback", plan.ifaces, plan.why)
	}
	if plan, err := s.planKernel(false, true); err != nil {
		t.Fatal(err)
	} else if len(plan.ifaces) != 1 || plan.ifaces[0].Flags&net.FlagLoopback == 0 {
		t.Fatalf("offload's plan on loopback: interfaces %v (why %q), want lo", plan.ifaces, plan.why)
	}

	for _, path := range []DataPath{DataPathAuto, DataPathEpoll, DataPathIOUring} {
		if path == DataPathIOUring && uring.Usable() != nil {
			c := base
			c.DataPath = path
			if s, err := New(c); err == nil || !strings.Contains(err.Error(), "io_uring") {
				if s != nil {
					s.Close()
				}
				t.Fatalf("io_uring forced on a kernel without it: err %v, want one naming io_uring", err)
			}
			continue
		}
		s := startServerOn(t, path, nil)
		want := path == DataPathIOUring || (path == DataPathAuto && uring.Usable() == nil)
		if got := s.workers[0].UsesUring(); got != want {
			t.Errorf("data path %q: worker uses io_uring %v, want %v", path, got, want)
		}
		// STUN is answered whichever loop runs (a Binding request goes through it to pion).
		if _, err := newClient(t, s, "alice").SendBindingRequest(); err != nil {
			t.Errorf("data path %q: binding: %v", path, err)
		}
	}
}
