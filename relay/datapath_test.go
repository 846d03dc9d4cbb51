//go:build linux

package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/relay/internal/kfast/nstest"
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

	// Data path auto serves a loopback listener with the tc variant, as offload does (planned
	// here; the tests' own relays pin a user-space path and attach nothing: the namespace they
	// run in is not one they made).
	s := startServer(t, nil)
	if s.kernel != nil {
		t.Fatalf("a test relay on data path %q attached the kernel fast path", s.loop)
	}
	for _, dp := range []DataPath{DataPathAuto, DataPathOffload} {
		plan, err := s.planKernel(false, dp == DataPathOffload)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.ifaces) != 1 || plan.ifaces[0].Flags&net.FlagLoopback == 0 || !plan.lis[0].IsValid() {
			t.Fatalf("data path %q on loopback: interfaces %v, listeners %v (why %q); want lo, serving the UDP listener", dpName(dp), plan.ifaces, plan.lis, plan.why)
		}
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
		t.Run(dpName(path), func(t *testing.T) {
			var s *Server
			var pc net.PacketConn
			if path == DataPathAuto {
				// Auto attaches where it can: run it inside a namespace of the test's own.
				ns := nstest.New(t, "dpauto")
				c := base
				c.DataPath = path
				var log lockedLog
				c.Logger = slog.New(slog.NewTextHandler(&log, nil))
				var err error
				ns.Do(func() {
					if s, err = New(c); err == nil {
						pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
					}
				})
				if s != nil {
					t.Cleanup(func() { s.Close() })
				}
				if err != nil {
					t.Fatal(err)
				}
				// It says which path runs, and how to turn the kernel's off; or why not.
				logged := log.String()
				on := regexp.MustCompile(`msg="kernel fast path on: [^"]*" data-path=auto interfaces="lo \(tc variant, tcx ingress\)".* turn-off="data-path io_uring \(or epoll\)`)
				off := regexp.MustCompile(`msg="kernel fast path off; relaying in user space" data-path=auto reason=".*(CAP_BPF|BPF)`)
				switch {
				case s.kernel != nil && !on.MatchString(logged):
					t.Errorf("kernel fast path on lo, but the log does not say so, or how to turn it off:\n%s", logged)
				case s.kernel == nil && !off.MatchString(logged):
					t.Errorf("no kernel fast path, and the log does not say why (BPF unavailable is the only reason here):\n%s", logged)
				}
				t.Logf("kernel fast path on: %v", s.kernel != nil)
				if s.kernel != nil {
					// Close detaches: nothing is left on the namespace's lo.
					t.Cleanup(func() {
						s.Close()
						var q *link.QueryResult
						ns.Do(func() {
							q, err = link.QueryPrograms(link.QueryOptions{Target: ns.Ifindex("lo"), Attach: ebpf.AttachTCXIngress})
						})
						if err != nil || len(q.Programs) != 0 {
							t.Errorf("after Close, lo's tcx ingress: %v, %v; want no program", q, err)
						}
					})
				}
			} else {
				s = startServerOn(t, path, nil)
				var err error
				if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			}
			want := path == DataPathIOUring || (path == DataPathAuto && uring.Usable() == nil)
			if got := s.workers[0].UsesUring(); got != want {
				t.Errorf("worker uses io_uring %v, want %v", got, want)
			}
			// STUN is answered whichever loop runs (a Binding request goes through it to pion).
			cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: s.addrOf(UDP), Conn: pc})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cl.Close(); pc.Close() })
			if err := cl.Listen(); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.SendBindingRequest(); err != nil {
				t.Errorf("binding: %v", err)
			}
		})
	}
}

// lockedLog is a log destination that goroutines may write while a test reads it.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
