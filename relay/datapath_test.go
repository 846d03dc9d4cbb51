//go:build linux

package relay

import (
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

	// The kernel fast path serves no loopback listener: offload refuses to start, naming why,
	// and auto runs the user-space loop alone.
	off := base
	off.DataPath = DataPathOffload
	if s, err := New(off); err == nil {
		s.Close()
		t.Fatal("data path offload started with only a loopback listener")
	} else if !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("data path offload on loopback: error %q does not say why", err)
	}
	if s := startServerOn(t, DataPathAuto, nil); s.kernel != nil {
		t.Fatal("data path auto attached the kernel fast path to loopback")
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
