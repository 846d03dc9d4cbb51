package portalloc

import (
	"errors"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"
)

// udpBinder binds real UDP sockets on one loopback address, as the relay
// will, and remembers them so the test can close them.
type udpBinder struct {
	network string
	ip      net.IP
	conns   map[uint16]*net.UDPConn
}

func (b *udpBinder) bind(p uint16) error {
	c, err := net.ListenUDP(b.network, &net.UDPAddr{IP: b.ip, Port: int(p)})
	if err != nil {
		return err
	}
	b.conns[p] = c
	return nil
}

func (b *udpBinder) closeAll() {
	for p, c := range b.conns {
		c.Close()
		delete(b.conns, p)
	}
}

// freeLoopbackRange finds n consecutive ports below 32768 (outside Linux's
// ephemeral range, so the kernel does not hand them out by itself) that can
// all be bound right now, and returns the first. It binds them to check and
// closes them again.
func freeLoopbackRange(t *testing.T, b *udpBinder, n int) uint16 {
	t.Helper()
	for range 50 {
		lo := uint16(20000 + rand.IntN(12000))
		ok := true
		for p := lo; p < lo+uint16(n); p++ {
			if err := b.bind(p); err != nil {
				ok = false
				break
			}
		}
		b.closeAll()
		if ok {
			return lo
		}
	}
	t.Skipf("no %d free consecutive %s ports on %v below 32768", n, b.network, b.ip)
	return 0
}

// TestRealSocketHeldElsewhere holds one port of a 4-port range with a real
// UDP socket, as another process would, and checks that the Allocator,
// binding real sockets, never hands it out and skips past it.
func TestRealSocketHeldElsewhere(t *testing.T) {
	tests := []struct {
		name    string
		network string
		ip      net.IP
	}{
		{"ipv4 loopback", "udp4", net.IPv4(127, 0, 0, 1)},
		{"ipv6 loopback", "udp6", net.IPv6loopback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &udpBinder{network: tt.network, ip: tt.ip, conns: map[uint16]*net.UDPConn{}}
			if c, err := net.ListenUDP(tt.network, &net.UDPAddr{IP: tt.ip}); err != nil {
				t.Skipf("%s not available: %v", tt.network, err)
			} else {
				c.Close()
			}
			defer b.closeAll()
			lo := freeLoopbackRange(t, b, 4)
			blocker := lo + 2
			outside, err := net.ListenUDP(tt.network, &net.UDPAddr{IP: tt.ip, Port: int(blocker)})
			if err != nil {
				t.Fatalf("hold port %d: %v", blocker, err)
			}
			defer func() {
				if outside != nil {
					outside.Close()
				}
			}()

			clk := &fakeClock{}
			a := mustNew(t, lo, lo+3, WithClock(clk.now), WithForeignCooldown(time.Minute))
			for range 3 {
				p, err := a.Acquire(b.bind)
				if err != nil {
					t.Fatalf("Acquire: %v", err)
				}
				if p == blocker {
					t.Fatalf("Acquire handed out port %d, held by another socket", p)
				}
			}
			if _, err := a.Acquire(b.bind); !errors.Is(err, ErrExhausted) {
				t.Fatalf("fourth Acquire = %v, want ErrExhausted", err)
			}
			if s := a.Stats(); s.Held != 3 || s.Foreign != 1 {
				t.Fatalf("Stats = %+v, want 3 held and 1 foreign", s)
			}
			if len(b.conns) != 3 {
				t.Fatalf("%d sockets bound, want 3", len(b.conns))
			}

			// Once the outside socket is gone and the cooldown is over, the
			// port is tried again and really bound.
			outside.Close()
			outside = nil
			clk.advance(time.Minute)
			if err := a.AcquirePort(blocker, b.bind); err != nil {
				t.Fatalf("AcquirePort(%d) after the outside socket closed: %v", blocker, err)
			}
			if _, ok := b.conns[blocker]; !ok {
				t.Fatalf("port %d not bound", blocker)
			}

			// A port bound twice through the Allocator is impossible, but the
			// kernel agrees: binding a held port directly fails.
			err = b.bind(blocker)
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("second bind of %d = %v, want EADDRINUSE", blocker, err)
			}
			mustCheck(t, a)
		})
	}
}
