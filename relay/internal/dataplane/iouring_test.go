//go:build linux

package dataplane

import (
	"bytes"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/internal/uring"
)

// uringRig is a forwardRig whose worker runs the io_uring loop's pieces by hand, on the
// test's locked OS thread (the ring's only submitter).
type uringRig struct {
	*forwardRig
	ring *uring.Ring
	lisA netip.AddrPort // the listener's address
}

func newUringRig(t *testing.T) *uringRig {
	t.Helper()
	if err := uring.Usable(); err != nil {
		t.Skipf("this kernel does not run the io_uring loop: %v", err)
	}
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r := newForwardRig(t)
	u, err := uring.New(bufSize)
	if err != nil {
		t.Fatal(err)
	}
	r.w.u = newUringState(r.w, u)
	r.w.socks[int32(r.rs.fd)] = r.rs
	r.w.arm(r.lis)
	r.w.arm(r.rs)
	t.Cleanup(func() {
		r.w.drainUring()
		if a := r.w.u.armed; a != 0 {
			t.Errorf("%d requests still armed after the drain", a)
		}
		r.w.u = nil
		u.Close()
	})
	lisA, _ := sock.LocalAddrPort(r.lis.fd)
	return &uringRig{forwardRig: r, ring: u, lisA: lisA}
}

// step submits what is queued, waits for a completion and handles every one that is ready.
func (r *uringRig) step(t testing.TB) {
	if e := r.ring.Enter(1, true, 1000); e != 0 && e != unix.EINTR {
		t.Fatalf("io_uring_enter: %v", e)
	}
	r.w.reap()
}

// settle steps until every send has completed.
func (r *uringRig) settle(t testing.TB) {
	for i := 0; r.w.u.inFlight > 0; i++ {
		if i == 100 {
			t.Fatalf("%d sends never completed", r.w.u.inFlight)
		}
		r.step(t)
	}
}

func TestUringRelaysBothWays(t *testing.T) {
	r := newUringRig(t)
	buf := make([]byte, 2048)
	_ = r.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	_ = r.cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i, size := range []int{0, 1, 160, 1200, bufSize - 4} {
		out := bytes.Repeat([]byte{byte(i + 1)}, size)
		if _, err := r.cl.WriteToUDPAddrPort(frame(0x4001, out), r.lisA); err != nil {
			t.Fatal(err)
		}
		r.step(t)
		r.settle(t)
		n, from, err := r.peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("size %d: peer: %v", size, err)
		}
		if from != r.rcAddr || !bytes.Equal(buf[:n], out) {
			t.Fatalf("size %d: peer got %d bytes from %v, want %d from %v", size, n, from, size, r.rcAddr)
		}

		back := bytes.Repeat([]byte{byte(i + 100)}, size)
		if _, err := r.peer.WriteToUDPAddrPort(back, r.rcAddr); err != nil {
			t.Fatal(err)
		}
		r.step(t)
		r.settle(t)
		n, _, err = r.cl.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("size %d: client: %v", size, err)
		}
		if want := frame(0x4001, back); !bytes.Equal(buf[:n], want) {
			t.Fatalf("size %d: client got % x…, want % x…", size, buf[:min(n, 8)], want[:min(len(want), 8)])
		}
	}
	if got := r.w.u.free; got != uring.Bufs {
		t.Errorf("%d of %d buffers back with the kernel after all sends completed", got, uring.Bufs)
	}
}

// A datagram larger than our buffers is dropped and counted, and the socket keeps relaying.
func TestUringDropsTruncated(t *testing.T) {
	r := newUringRig(t)
	big := frame(0x4001, make([]byte, bufSize+100))
	if _, err := r.cl.WriteToUDPAddrPort(big, r.lisA); err != nil {
		t.Fatal(err)
	}
	r.step(t)
	if got := r.w.stats.drops[DropTooLarge].Load(); got != 1 {
		t.Fatalf("drops[too_large] = %d, want 1", got)
	}
	if _, err := r.cl.WriteToUDPAddrPort(frame(0x4001, []byte("next")), r.lisA); err != nil {
		t.Fatal(err)
	}
	r.step(t)
	r.settle(t)
	buf := make([]byte, 64)
	_ = r.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := r.peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "next" {
		t.Fatalf("after the drop the peer got %q, %v; want \"next\"", buf[:n], err)
	}
}

// When every buffer is taken the kernel ends the multishot receive (ENOBUFS); the loop arms
// it again once buffers come back, and nothing queued on the socket is lost.
func TestUringRearmsAfterBuffersRunOut(t *testing.T) {
	r := newUringRig(t)
	st := r.w.u
	// Take every buffer away from the kernel, as sends still in flight would.
	u := r.ring
	u.MoveBufTail(-uring.Bufs)
	u.PublishBufs()
	st.free = 0
	const n = 5
	for i := 0; i < n; i++ {
		if _, err := r.cl.WriteToUDPAddrPort(frame(0x4001, []byte{byte(i)}), r.lisA); err != nil {
			t.Fatal(err)
		}
	}
	r.step(t)
	if !slices.Contains(st.rearm, r.lis) || r.lis.armed {
		t.Fatalf("after ENOBUFS the listener should wait for buffers, unarmed: %d socks waiting, armed %v", len(st.rearm), r.lis.armed)
	}
	// Give the buffers back: the next reap re-arms, and the queued datagrams arrive.
	u.MoveBufTail(uring.Bufs)
	st.free = uring.Bufs
	st.returned = true
	r.w.reap()
	got := 0
	buf := make([]byte, 64)
	_ = r.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got < n {
		r.step(t)
		r.settle(t)
		for {
			_ = r.peer.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			m, _, err := r.peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if m != 1 || buf[0] != byte(got) {
				t.Fatalf("datagram %d: got % x", got, buf[:m])
			}
			got++
		}
	}
}

// TestUringStepAllocatesNothing is TestForwardingStepAllocatesNothing for the io_uring loop:
// receive completion, classify, look up, queue the send, count, complete the send, both
// directions.
func TestUringStepAllocatesNothing(t *testing.T) {
	r := newUringRig(t)
	data := frame(0x4001, make([]byte, 160))
	buf := make([]byte, 2048)
	_ = r.peer.SetReadDeadline(time.Now().Add(time.Minute))
	_ = r.cl.SetReadDeadline(time.Now().Add(time.Minute))
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := r.cl.WriteToUDPAddrPort(data, r.lisA); err != nil {
			t.Fatal(err)
		}
		r.step(t)
		r.settle(t)
		if _, _, err := r.peer.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := r.peer.WriteToUDPAddrPort(data[4:], r.rcAddr); err != nil {
			t.Fatal(err)
		}
		r.step(t)
		r.settle(t)
		if _, _, err := r.cl.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("io_uring forwarding step allocates %.1f times per packet pair, want 0", allocs)
	}
	for dir := range 2 {
		if got := r.w.stats.Packets(metrics.Direction(dir), metrics.PathChannel); got < 200 {
			t.Fatalf("direction %d: %d packets relayed, want at least 200", dir, got)
		}
	}
}

// The round's wait submits the round's sends and must not end on their completions: it waits
// for one completion more (waitTarget), so with no packet coming it lasts its whole timeout
// (a wait cannot end early by being slow, so the bound is safe on a loaded machine), and the
// sends have left.
func TestUringWaitIsNotEndedByOwnSends(t *testing.T) {
	r := newUringRig(t)
	if _, err := r.cl.WriteToUDPAddrPort(frame(0x4001, []byte("out")), r.lisA); err != nil {
		t.Fatal(err)
	}
	r.step(t) // receives the datagram and queues its send
	if r.w.u.unsent != 1 {
		t.Fatalf("%d sends queued, want 1", r.w.u.unsent)
	}
	const timeout = 50 * time.Millisecond
	start := time.Now()
	// Through the runtime's syscall path: a raw wait would be cut short by the runtime's
	// preemption signal, and a signal during a wait that also submitted is not reported.
	if e := r.ring.Enter(r.w.u.waitTarget(), false, int(timeout/time.Millisecond)); e != 0 && e != unix.ETIME {
		t.Fatalf("wait: %v", e)
	}
	if took := time.Since(start); took < timeout*9/10 {
		t.Fatalf("the wait ended after %v with no packet coming; want its %v timeout", took, timeout)
	}
	buf := make([]byte, 64)
	_ = r.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := r.peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "out" {
		t.Fatalf("peer got %q, %v; want \"out\"", buf[:n], err)
	}
	if n := r.w.reap(); n != 0 || r.w.u.inFlight != 0 {
		t.Fatalf("after the wait: %d receives reaped (want 0), %d sends in flight (want 0)", n, r.w.u.inFlight)
	}
}
