//go:build linux

package dataplane

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/internal/uring"
)

// graceRig is the window of issue 14, item 3, held open by hand: worker "sender" has looked
// up a client's ChannelData and holds the send to the relay socket (queued for its round's
// flush, or prepared in its ring and not yet submitted) while the allocation goes and worker
// "owner", which reads the relay socket, is asked to close it. Fresh sockets then take the
// lowest free descriptor numbers; the sender's round ends; no byte may reach them.
type graceRig struct {
	sender, owner *Worker
	rc            *Relay
	rcAddr        netip.AddrPort
	a             *Alloc
	lisAddr       netip.AddrPort
	client        netip.AddrPort
	cl, peer      *net.UDPConn
}

func newGraceRig(t *testing.T, ownerUring bool) *graceRig {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tbl := NewTable()
	sender, err := NewWorker(0, Config{Table: tbl, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := NewWorker(1, Config{Table: tbl, Log: log, UseUring: ownerUring})
	if err != nil {
		t.Fatal(err)
	}
	lfd, err := sock.OpenUDP(netip.MustParseAddrPort("127.0.0.1:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	lisAddr, _ := sock.LocalAddrPort(lfd)
	if err := sender.AddListener(lfd, NewListener(0, 1, 8)); err != nil {
		t.Fatal(err)
	}
	rfd, err := sock.OpenUDP(netip.MustParseAddrPort("127.0.0.1:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	rcAddr, _ := sock.LocalAddrPort(rfd)
	rc := NewRelay(rfd, 8, 0)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	client := cl.LocalAddr().(*net.UDPAddr).AddrPort()
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	a := tbl.NewAlloc(rc)
	a.Key, a.UDP = Key{Lis: 0, Client: client}, true
	a.ClientRaw.Set(client)
	ch := &Chan{Num: 0x4001, Peer: peerAP}
	ch.Raw.Set(peerAP)
	tbl.Permit(a, peerAP.Addr())
	tbl.Bind(a, ch)
	tbl.Insert(a)
	rc.Alloc.Store(a)
	owner.Start()
	if !owner.AddRelay(rc) {
		t.Fatal("owner stopped")
	}
	t.Cleanup(func() {
		owner.Close()
		sender.Close()
		peer.Close()
		cl.Close()
	})
	return &graceRig{sender: sender, owner: owner, rc: rc, rcAddr: rcAddr, a: a, lisAddr: lisAddr,
		client: client, cl: cl, peer: peer}
}

// deleteAndClose takes the allocation out of reach as pion's Refresh(0) does (its channels
// first, then the table entry), then closes the relay socket the way relayConn.Close does,
// on a goroutine. It returns once the close has happened or the closer is waiting for the
// sender (the sender's wake-up eventfd is readable: an op is queued for it), and reports
// which.
func (g *graceRig) deleteAndClose(t *testing.T) (closed <-chan struct{}, waiting bool) {
	t.Helper()
	g.sender.fast.Clear(g.a)
	g.sender.fast.Remove(g.a)
	done := make(chan struct{})
	go func() {
		g.owner.CloseRelay(g.rc, []*Worker{g.sender, g.owner})
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return done, false
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(g.sender.wakefd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 10); n > 0 {
			return done, true
		}
	}
	t.Fatal("CloseRelay neither closed the socket nor asked the sender for a grace period")
	return nil, false
}

// decoys are sockets opened right after the close, so that they take the lowest free
// descriptor numbers: n connected TCP pairs and n UDP sockets. A payload sent through a
// reused number would land in a TCP stream (read at its far end) or leave a UDP decoy for
// the peer (the peer's check sees the wrong source).
type decoys struct {
	lfd int   // the TCP listener the connections are made through
	fds []int // every decoy descriptor (both ends of each connection), closed by the test's cleanup
}

func newDecoys(t *testing.T) *decoys {
	t.Helper()
	d := &decoys{}
	t.Cleanup(func() {
		for _, fd := range d.fds {
			unix.Close(fd)
		}
	})
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	d.fds = append(d.fds, lfd)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 16); err != nil {
		t.Fatal(err)
	}
	d.lfd = lfd
	return d
}

// open opens the decoys; the listener was made before, so that the first socket opened
// after the close is a connected one.
func (d *decoys) open(t *testing.T, n int) {
	t.Helper()
	lfd := d.lfd
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		d.fds = append(d.fds, c)
		if err := unix.Connect(c, sa); err != nil {
			t.Fatal(err)
		}
		s, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		d.fds = append(d.fds, s)
		u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		d.fds = append(d.fds, u)
		if err := unix.Bind(u, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
	}
}

// check fails the test if any decoy received a byte. Loopback delivers within the sending
// system call, so a non-blocking look is exact once the send was made.
func (d *decoys) check(t *testing.T, relayFD int) {
	t.Helper()
	reused := false
	for _, fd := range d.fds {
		reused = reused || fd == relayFD
	}
	for _, fd := range d.fds {
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			continue // the listener
		}
		if n != 0 {
			t.Errorf("decoy fd %d has %d bytes queued (the relay socket's number %d was reused: %v)", fd, n, relayFD, reused)
		}
	}
}

// peerGotOnly reads every datagram waiting at the peer and fails unless it is exactly want,
// once, from the relay address.
func (g *graceRig) peerGotOnly(t *testing.T, want []byte) {
	t.Helper()
	rc, err := g.peer.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	got := 0
	for {
		n, from := -1, unix.Sockaddr(nil)
		_ = rc.Control(func(fd uintptr) { // non-blocking: loopback delivered it already
			n, from, err = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		})
		if n < 0 || err != nil {
			break
		}
		got++
		sa, _ := from.(*unix.SockaddrInet4)
		src := netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		if src != g.rcAddr || !bytes.Equal(buf[:n], want) {
			t.Errorf("peer got %q from %v, want %q from the relay socket %v", buf[:n], src, want, g.rcAddr)
		}
	}
	if got != 1 {
		t.Errorf("peer got %d datagrams, want 1 (the one looked up before the delete)", got)
	}
}

// TestCloseRelayWaitsForQueuedSends holds a send to a relay socket queued in one worker
// while the allocation is deleted and its owner closes the socket. Without a grace period
// the close happens at once, the next socket opened gets the number, and the queued payload
// leaves through it; with one, the close waits for the sender's round to end.
func TestCloseRelayWaitsForQueuedSends(t *testing.T) {
	payload := []byte("media for the peer, looked up before the delete")
	t.Run("epoll", func(t *testing.T) {
		for _, ownerUring := range []bool{false, true} {
			if ownerUring && uring.Usable() != nil {
				continue
			}
			g := newGraceRig(t, ownerUring)
			// The sender's round: the datagram is classified and its send queued.
			w := g.sender
			n := copy(w.bufs[0][headroom:], frame(0x4001, payload))
			w.handle(w.lisSocks[0], &w.bufs[0], n, g.client)
			if len(w.out) != 1 || w.out[0].fd != g.rc.FD {
				t.Fatalf("the send was not queued: %+v", w.out)
			}
			d := newDecoys(t)
			closed, waiting := g.deleteAndClose(t)
			d.open(t, 4)
			// The round ends as runEpoll ends one: flush, then the ops.
			w.flush()
			w.runOps()
			if !waiting {
				t.Errorf("owner uring=%v: the relay socket was closed while worker %d still had a send queued on it", ownerUring, w.id)
			}
			waitClosed(t, closed)
			d.check(t, g.rc.FD)
			g.peerGotOnly(t, payload)
		}
	})
	t.Run("io_uring", func(t *testing.T) {
		if err := uring.Usable(); err != nil {
			t.Skipf("this kernel does not run the io_uring loop: %v", err)
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for _, ownerUring := range []bool{false, true} {
			g := newGraceRig(t, ownerUring)
			w := g.sender
			u, err := uring.New(bufSize)
			if err != nil {
				t.Fatal(err)
			}
			w.u = newUringState(w, u)
			w.arm(w.lisSocks[0])
			if _, err := g.cl.WriteToUDPAddrPort(frame(0x4001, payload), g.lisAddr); err != nil {
				t.Fatal(err)
			}
			// The sender's reap: the datagram is classified and its send prepared, not submitted.
			for i := 0; w.u.inFlight == 0; i++ {
				if i == 100 {
					t.Fatal("the ChannelData never reached the sender")
				}
				if e := u.Enter(1, true, 1000); e != 0 && e != unix.EINTR {
					t.Fatalf("io_uring_enter: %v", e)
				}
				w.reap()
			}
			if u.Pending() == 0 {
				t.Fatal("the send was submitted in the same reap")
			}
			d := newDecoys(t)
			closed, waiting := g.deleteAndClose(t)
			d.open(t, 4)
			// The round ends as runUring ends one: the ops arrive in a reap, the sends are
			// submitted before the wait.
			w.runUringOps()
			w.endSyncs()
			if u.Pending() != 0 {
				t.Fatal("the sends were not submitted")
			}
			if !waiting {
				t.Errorf("owner uring=%v: the relay socket was closed while worker %d still had a send prepared on it", ownerUring, w.id)
			}
			waitClosed(t, closed)
			d.check(t, g.rc.FD)
			g.peerGotOnly(t, payload)
			w.drainUring()
			w.u = nil
			u.Close()
		}
	})
}

func waitClosed(t *testing.T, closed <-chan struct{}) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("CloseRelay did not return after the sender's round ended")
	}
}

// BenchmarkQuiesce is the grace period a relay socket's close waits for when the workers are
// idle: a wake-up and a round of every worker.
func BenchmarkQuiesce(b *testing.B) {
	for _, useUring := range []bool{false, true} {
		name := "epoll"
		if useUring {
			name = "io_uring"
			if uring.Usable() != nil {
				continue
			}
		}
		b.Run(name, func(b *testing.B) {
			ws := make([]*Worker, 4)
			for i := range ws {
				w, err := NewWorker(i, Config{Table: NewTable(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), UseUring: useUring})
				if err != nil {
					b.Fatal(err)
				}
				w.Start()
				b.Cleanup(w.Close)
				ws[i] = w
			}
			b.ReportAllocs()
			for b.Loop() {
				Quiesce(ws)
			}
		})
	}
}
