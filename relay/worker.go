//go:build linux

package relay

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/internal/uring"
)

const (
	batchSize = 32   // datagrams per recvmmsg
	ringSize  = 256  // buffers per worker: forwarded packets wait here until the round's flush
	headroom  = 4    // room for the ChannelData header, written in place
	bufSize   = 2048 // largest datagram we accept (media is ≤ 1500; pion's inbound MTU is 1600)
	maxEvents = 128
	// maxReadsPerSocket bounds how many recvmmsg calls one ready socket gets per round, so that
	// one busy socket cannot starve the others of a worker.
	maxReadsPerSocket = 4
)

type sockKind uint8

const (
	kindWake sockKind = iota
	kindListener
	kindRelay
)

// loopSock is a socket registered with a worker's epoll. Static after construction.
type loopSock struct {
	fd   int
	kind sockKind
	lis  *listenerGroup // kindListener
	rc   *relayConn     // kindRelay

	// io_uring loop only. Owned by the loop.
	armed   bool          // its multishot request is live
	closing chan struct{} // closeRelay waits on it: closed once the request ended and fd is closed
}

type opKind uint8

const (
	opAdd opKind = iota
	opClose
)

type workerOp struct {
	kind opKind
	s    *loopSock
	done chan struct{} // closed when the op has run (opClose)
}

// worker is one forwarding loop: a locked OS thread with its own epoll instance, its own
// SO_REUSEPORT socket for every listen address, and a share of the relay sockets.
type worker struct {
	id     int
	srv    *Server
	epfd   int       // Static after construction.
	holdMs int       // how long an idle wait holds the P (see Config.IdleHold). Static after construction.
	active time.Time // the last round that had packets, when holdMs > 0. Owned by the loop.
	wakefd int       // eventfd; Static after construction.

	mu      sync.Mutex
	ops     []workerOp // Guarded by mu.
	stopped bool       // Guarded by mu.

	socks    map[int32]*loopSock // Owned by the loop.
	lisSocks []*loopSock         // this worker's socket per listen address, by listenerGroup.id. Static after start.

	// Receive and send state. Owned by the loop.
	bufs   [ringSize][headroom + bufSize]byte
	next   int // first free buffer of the ring
	rmsgs  [batchSize]unix.Mmsghdr
	riovs  [batchSize]unix.Iovec
	rnames [batchSize][unix.SizeofSockaddrInet6]byte
	out    []outPkt // queued sends, flushed at the end of a round (cap ringSize)
	smsgs  [ringSize]unix.Mmsghdr
	siovs  [ringSize]unix.Iovec
	cmsgs  [ringSize][32]byte // UDP_SEGMENT control messages
	segs   []uint8            // datagrams per message of a sendmmsg (cap ringSize)
	noGSO  bool               // the kernel refused UDP_SEGMENT once
	events [maxEvents]unix.EpollEvent

	stats workerStats

	useUring bool        // run the io_uring loop (see Config.DataPath). Static after construction.
	u        *uringState // the io_uring loop's state while it runs. Owned by the loop.

	started atomic.Bool // run was started (else Close tears down without it)
	done    chan struct{}
}

// outPkt is a datagram waiting for the round's flush.
type outPkt struct {
	fd int
	b  []byte
	to *sock.RawAddr
}

func newWorker(id int, srv *Server) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	w := &worker{
		id: id, srv: srv, epfd: epfd, wakefd: wfd,
		socks: map[int32]*loopSock{},
		out:   make([]outPkt, 0, ringSize),
		segs:  make([]uint8, 0, ringSize),
		done:  make(chan struct{}),
	}
	if err := w.register(&loopSock{fd: wfd, kind: kindWake}); err != nil {
		unix.Close(epfd)
		unix.Close(wfd)
		return nil, err
	}
	for i := range w.rmsgs {
		w.rmsgs[i].Hdr.Iov = &w.riovs[i]
		w.rmsgs[i].Hdr.Iovlen = 1
		w.rmsgs[i].Hdr.Name = &w.rnames[i][0]
	}

	return w, nil
}

// register adds s to the loop's epoll and table. Before the loop starts or from the loop only.
func (w *worker) register(s *loopSock) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return err
	}
	w.socks[int32(s.fd)] = s
	return nil
}

// submit hands an op to the loop. It reports false if the worker has stopped (the caller
// then does the work itself: nothing reads the socket any more).
func (w *worker) submit(op workerOp) bool {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return false
	}
	w.ops = append(w.ops, op)
	w.mu.Unlock()
	w.wake()
	return true
}

// addRelay starts reading a relay socket.
func (w *worker) addRelay(rc *relayConn) bool {
	return w.submit(workerOp{kind: opAdd, s: &loopSock{fd: rc.fd, kind: kindRelay, rc: rc}})
}

// closeRelay stops reading rc's socket and closes it, from the loop, so that no read can
// race with the descriptor's reuse. It waits for the loop. Exactly one side closes the fd:
// the loop (or its shutdown) when the op was accepted, the caller when the worker had stopped.
func (w *worker) closeRelay(rc *relayConn) {
	done := make(chan struct{})
	if !w.submit(workerOp{kind: opClose, s: &loopSock{fd: rc.fd, kind: kindRelay, rc: rc}, done: done}) {
		unix.Close(rc.fd)
		return
	}
	<-done
}

// stop ends the loop and waits for it; every socket it owned is closed.
func (w *worker) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wake()
	<-w.done
}

// takeOps empties the op queue and tells whether the worker was stopped.
func (w *worker) takeOps() ([]workerOp, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ops := w.ops
	w.ops = nil
	return ops, w.stopped
}

// wake interrupts the loop's wait (its eventfd becomes readable).
func (w *worker) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.wakefd, one[:])
}

func (w *worker) runOps() bool {
	ops, stopped := w.takeOps()
	for _, op := range ops {
		switch op.kind {
		case opAdd:
			if err := w.register(op.s); err != nil {
				w.srv.log.Error("relay: worker cannot watch relay socket", "worker", w.id, "err", err)
			}
		case opClose:
			if _, ok := w.socks[int32(op.s.fd)]; ok {
				_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, op.s.fd, nil)
				delete(w.socks, int32(op.s.fd))
			}
			unix.Close(op.s.fd)
			if op.done != nil {
				close(op.done)
			}
		}
	}
	return !stopped
}

// run is the loop. It owns its OS thread: readiness is waited for here, not in Go's
// netpoller, so a packet costs one wake-up of this thread and no goroutine switch.
func (w *worker) run() {
	// The loop owns its OS thread. Holding a P in a raw epoll_wait is only safe this way:
	// measured under CPU contention, an unlocked worker let a stop-the-world wait for
	// seconds (and relaying with it) while it migrated between threads; locked, GC took
	// tens of milliseconds and the largest gap between relayed packets stayed ~20 ms.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer w.shutdown()
	if w.useUring {
		// The ring is made here, on the thread that will be its only submitter.
		u, err := uring.New(bufSize)
		if err == nil {
			w.runUring(u)
			return
		}
		w.srv.log.Error("relay: worker cannot set up io_uring; it runs the epoll loop", "worker", w.id, "err", err)
	}
	busy := false
	for {
		// Wait for readiness without the runtime's syscall bookkeeping: when the program has
		// a scheduler slot (P) to spare beside the workers, the worker keeps its P while it
		// waits (holdMs: -1 for as long as it takes, see Config.IdleHold), so a packet costs
		// one wake-up of this thread and nothing else; a worker that must share parks through
		// the runtime, which hands its P to other goroutines meanwhile, and only polls raw
		// when the last round was busy.
		n, errno := 0, unix.Errno(0)
		if hold := w.holdFor(); hold != 0 || busy {
			n, errno = epollWaitRaw(w.epfd, w.events[:], hold)
		}
		if errno == unix.EINTR {
			// A signal: most likely the runtime asking this goroutine to yield (a
			// stop-the-world, or the scheduler's 10ms preemption). Yield here, at a safe
			// point, or the request would land in the kernel again on every retry.
			runtime.Gosched()
			continue
		}
		if errno == 0 && n == 0 && w.holdMs >= 0 {
			w.flush()
			var err error
			n, err = unix.EpollWait(w.epfd, w.events[:], -1)
			if err != nil {
				if err == unix.EINTR {
					continue
				}
				w.srv.log.Error("relay: epoll_wait failed; worker stops", "worker", w.id, "err", err)
				return
			}
		} else if errno != 0 {
			w.srv.log.Error("relay: epoll_wait failed; worker stops", "worker", w.id, "err", errno)
			return
		}
		busy = n > 1
		if n > 0 && w.holdMs > 0 {
			w.active = time.Now()
		}
		for i := 0; i < n; i++ {
			s := w.socks[w.events[i].Fd]
			if s == nil {
				continue
			}
			if s.kind == kindWake {
				var b [8]byte
				_, _ = unix.Read(w.wakefd, b[:])
				w.flush()
				if !w.runOps() {
					return
				}
				continue
			}
			w.readSock(s)
		}
		w.flush()
	}
}

func (w *worker) shutdown() {
	w.flush()
	w.mu.Lock()
	w.stopped = true
	ops := w.ops
	w.ops = nil
	w.mu.Unlock()
	// Relay sockets belong to their relayConn, which closes them itself once it finds the
	// worker stopped; only a close that was already asked of the loop is done here.
	for _, op := range ops {
		if op.kind == opClose {
			unix.Close(op.s.fd)
			close(op.done)
		}
	}
	for _, s := range w.lisSocks {
		unix.Close(s.fd)
	}
	unix.Close(w.wakefd)
	unix.Close(w.epfd)
	close(w.done)
}

// holdFor is how long the next wait may hold the P: -1 for as long as it takes, 0 not at
// all (park through the runtime), else the milliseconds left of Config.IdleHold since the
// last round that had packets. It counts from that round, not from the wait, because the
// runtime's preemption (every 10-20 ms) ends a raw wait early, and a hold restarted on each
// of those would never run out.
func (w *worker) holdFor() int {
	if w.holdMs <= 0 {
		return w.holdMs
	}
	if rem := w.holdMs - int(time.Since(w.active)/time.Millisecond); rem > 0 {
		return rem
	}
	return 0
}

// epollWaitRaw waits up to ms milliseconds (0: a poll) without entering the scheduler's
// syscall path: the P stays with this thread. A signal (the runtime's preemption request)
// ends the wait with EINTR, so the goroutine still yields when the runtime asks.
func epollWaitRaw(epfd int, events []unix.EpollEvent, ms int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(ms), 0, 0)
	return int(r), e
}

// workerStats are the counters of one worker: written by its loop only (atomics so a scrape
// may read them at any time), summed by the metrics Source.
type workerStats struct {
	traffic [2][2]struct {
		packets atomic.Uint64
		bytes   atomic.Uint64
		_       [48]byte // keep directions on their own cache lines
	}
	drops   [numDropReasons]atomic.Uint64
	binding atomic.Uint64
}
