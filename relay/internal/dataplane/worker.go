//go:build linux

package dataplane

import (
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/internal/uring"
	"github.com/avedge/avedge/relay/policy"
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

// The io_uring loop writes the ChannelData header into the end of the source address that
// precedes the payload in its buffers.
const _ = uint(uring.PayloadOff - uring.NameOff - headroom)

type opKind uint8

const (
	opAdd   opKind = iota
	opClose        // stop reading s and close its fd
	opSync         // report the next point at which the loop holds no fd taken from the table
)

type workerOp struct {
	kind opKind
	s    *loopSock     // opAdd, opClose
	done chan struct{} // closed when the op has run (opClose, opSync)
}

// Config is what a worker needs from the relay. Every field is read once, by NewWorker.
type Config struct {
	// Table is the fast-path table the worker looks packets up in.
	Table *Table
	// Log receives the worker's rare errors (never one per packet).
	Log *slog.Logger
	// HoldMs is how long an idle wait keeps the worker's scheduler slot (P), in milliseconds:
	// -1 for as long as it takes, 0 never (park through the runtime).
	HoldMs int
	// UseUring runs the io_uring loop (uring.Usable must have said yes) instead of epoll.
	UseUring bool
	// RequestLimit, per client IP address, limits the STUN requests of clients without an
	// allocation that the worker hands to the control plane (binding.go); excess is dropped
	// (DropRateLimited). It may be shared by every worker (it locks itself). Nil: unlimited.
	RequestLimit *policy.Limiter
	// BindingLimit, per client IP address, limits the Binding answers the worker sends itself:
	// the same limiter the control plane's Binding answers count against. Nil: unlimited.
	BindingLimit *policy.Limiter
	// Challenge may answer, statelessly, a STUN request of a client without an allocation
	// that the control plane would only challenge (binding.go): it writes the answer to out
	// (ChallengeMax bytes) and returns its length, 0 to hand the request on, -1 to drop it
	// (DropRateLimited). It is called on the worker's thread. Nil: every such request is
	// handed on.
	Challenge func(lis uint16, req []byte, from netip.AddrPort, out []byte) int
}

// ChallengeMax is the size of the buffer a worker gives Config.Challenge.
const ChallengeMax = 1024

// Worker is one forwarding loop: a locked OS thread with its own epoll instance (or
// io_uring), its own SO_REUSEPORT socket for every listen address, and a share of the relay
// sockets.
type Worker struct {
	id       int
	log      *slog.Logger                                                      // Static after construction.
	fast     *Table                                                            // Static after construction.
	epfd     int                                                               // Static after construction.
	holdMs   int                                                               // see Config.HoldMs. Static after construction.
	useUring bool                                                              // Static after construction.
	limit    *policy.Limiter                                                   // Config.RequestLimit. Static after construction.
	bindLim  *policy.Limiter                                                   // Config.BindingLimit. Static after construction.
	chal     func(lis uint16, req []byte, from netip.AddrPort, out []byte) int // Config.Challenge. Static after construction.
	chalBuf  [ChallengeMax]byte                                                // Challenge's answer, before it is copied over the request. Owned by the loop.
	wakefd   int                                                               // eventfd. Static after construction.
	active   time.Time                                                         // the last round that had packets, when holdMs > 0. Owned by the loop.

	mu      sync.Mutex
	ops     []workerOp // Guarded by mu.
	stopped bool       // Guarded by mu.

	socks    map[int32]*loopSock // Owned by the loop (written before Start by AddListener).
	lisSocks []*loopSock         // this worker's socket per listen address, by Listener.ID. Static after Start.

	// The epoll loop's receive and send state. Owned by the loop.
	bufs   [ringSize][headroom + bufSize]byte
	next   int // first free buffer of the ring
	rmsgs  [batchSize]unix.Mmsghdr
	riovs  [batchSize]unix.Iovec
	rnames [batchSize][sock.SockaddrSize]byte
	out    []outPkt // queued sends, flushed at the end of a round (cap ringSize)
	smsgs  [ringSize]unix.Mmsghdr
	siovs  [ringSize]unix.Iovec
	cmsgs  [ringSize][32]byte // UDP_SEGMENT control messages
	segs   []uint8            // datagrams per message of a sendmmsg (cap ringSize)
	noGSO  bool               // the kernel refused UDP_SEGMENT once
	events [maxEvents]unix.EpollEvent

	// Destinations of the Binding answers the worker sends (binding.go), used in turn. A send
	// the epoll loop queued keeps a pointer to its destination until the round's flush, and
	// at most ringSize sends are queued at once, so a slot is free again long before it comes
	// round. (The io_uring loop copies the address when it prepares the send.) Owned by the
	// loop.
	replyTo   [2 * ringSize]sock.RawAddr
	replyNext int

	u *uringState // the io_uring loop's state while it runs. Owned by the loop.

	stats Stats // written by the loop, read by scrapes

	started atomic.Bool   // Start was called (else Close tears down without the loop)
	done    chan struct{} // closed when the loop (or Close, if never started) has torn down
}

// NewWorker makes worker id. It does not run until Start.
func NewWorker(id int, cfg Config) (*Worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	w := &Worker{
		id: id, log: cfg.Log, fast: cfg.Table, epfd: epfd, wakefd: wfd,
		holdMs: cfg.HoldMs, useUring: cfg.UseUring, limit: cfg.RequestLimit, bindLim: cfg.BindingLimit, chal: cfg.Challenge,
		socks: map[int32]*loopSock{},
		out:   make([]outPkt, 0, ringSize),
		segs:  make([]uint8, 0, ringSize),
		done:  make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.Default()
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

// AddListener makes fd this worker's socket of listen address l. Before Start only, in the
// order of l.ID. The worker closes fd when it stops.
func (w *Worker) AddListener(fd int, l *Listener) error {
	sk := &loopSock{fd: fd, kind: kindListener, lis: l}
	w.lisSocks = append(w.lisSocks, sk)
	return w.register(sk)
}

// Start runs the loop on its own goroutine.
func (w *Worker) Start() {
	w.started.Store(true)
	go w.run()
}

// Close stops the loop (or, if it never ran, tears down what NewWorker and AddListener made)
// and waits for it; every listener socket is closed. Relay sockets belong to their owners,
// who close them through CloseRelay. Safe to call more than once, not concurrently.
func (w *Worker) Close() {
	select {
	case <-w.done:
	default:
		if w.started.Load() {
			w.stop()
		} else {
			w.shutdown()
		}
	}
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// UsesUring reports whether the worker runs the io_uring loop (Config.UseUring).
func (w *Worker) UsesUring() bool { return w.useUring }

// HoldMs is Config.HoldMs.
func (w *Worker) HoldMs() int { return w.holdMs }

// register adds s to the loop's epoll and table. Before the loop starts or from the loop only.
func (w *Worker) register(s *loopSock) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return err
	}
	w.socks[int32(s.fd)] = s
	return nil
}

// submit hands an op to the loop. It reports false if the worker has stopped (the caller
// then does the work itself: nothing reads the socket any more).
func (w *Worker) submit(op workerOp) bool {
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

// AddRelay starts reading relay socket r. It reports false if the worker has stopped.
func (w *Worker) AddRelay(r *Relay) bool {
	return w.submit(workerOp{kind: opAdd, s: &loopSock{fd: r.FD, kind: kindRelay, rc: r}})
}

// CloseRelay stops reading r's socket and closes it, from the loop, so that no read can race
// with the descriptor's reuse. It waits for the loop. Exactly one side closes the fd: the
// loop (or its shutdown) when the op was accepted, the caller when the worker had stopped.
//
// Any worker may have r's fd in hand: a client's ChannelData that it looked up in the table
// before the allocation's channels went leaves through r's socket at the end of that
// worker's round (epoll) or when its next io_uring_enter submits it. Were the fd closed
// before, Linux would give its number to the next socket opened (the lowest free one), and
// the payload would leave through that socket instead. So the caller first makes r
// unreachable from the table (its allocation without channels, or out of the table), then
// CloseRelay waits out a grace period: every worker of all (which holds w) reports a point
// in its loop at which it holds no fd taken from the table before (Quiesce); only then does
// w close the fd.
func (w *Worker) CloseRelay(r *Relay, all []*Worker) {
	Quiesce(all)
	done := make(chan struct{})
	if !w.submit(workerOp{kind: opClose, s: &loopSock{fd: r.FD, kind: kindRelay, rc: r}, done: done}) {
		unix.Close(r.FD)
		return
	}
	<-done
}

// Quiesce waits until every running worker of ws has passed a quiescent point since the call
// began: a point in its loop where no datagram it classified before is still waiting to be
// sent (epoll: after the round's flush; io_uring: once the round's sends were submitted,
// and a submitted request holds its own reference to the socket, not the number). A
// worker that has stopped holds nothing and is not waited for. It costs every worker one
// wake-up and nothing per packet: grace periods as in RCU, with the loops' op queue as the
// only shared state.
func Quiesce(ws []*Worker) {
	dones := make([]chan struct{}, 0, len(ws))
	for _, w := range ws {
		done := make(chan struct{})
		if w.submit(workerOp{kind: opSync, done: done}) {
			dones = append(dones, done)
		}
	}
	for _, d := range dones {
		<-d
	}
}

// stop ends the loop and waits for it; every socket it owned is closed.
func (w *Worker) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.wake()
	<-w.done
}

// takeOps empties the op queue and tells whether the worker was stopped.
func (w *Worker) takeOps() ([]workerOp, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ops := w.ops
	w.ops = nil
	return ops, w.stopped
}

// wake interrupts the loop's wait (its eventfd becomes readable).
func (w *Worker) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.wakefd, one[:])
}

// run is the loop's goroutine. It owns its OS thread: readiness is waited for here, not in
// Go's netpoller, so a packet costs one wake-up of this thread and no goroutine switch.
func (w *Worker) run() {
	// The loop owns its OS thread. Holding a P in a raw wait is only safe this way: an
	// unlocked worker let a stop-the-world wait (and relaying with it) while it migrated
	// between threads (measured: see README, "Performance").
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
		w.log.Error("relay: worker cannot set up io_uring; it runs the epoll loop", "worker", w.id, "err", err)
	}
	w.runEpoll()
}

func (w *Worker) shutdown() {
	w.flush()
	w.mu.Lock()
	w.stopped = true
	ops := w.ops
	w.ops = nil
	w.mu.Unlock()
	// Relay sockets belong to their owners, which close them themselves once they find the
	// worker stopped; only a close that was already asked of the loop is done here.
	for _, op := range ops {
		switch op.kind {
		case opClose:
			unix.Close(op.s.fd)
			close(op.done)
		case opSync:
			close(op.done) // the loop has ended: it sends nothing more
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
// all (park through the runtime), else the milliseconds left of the hold since the last
// round that had packets. It counts from that round, not from the wait, because the
// runtime's preemption (every 10-20 ms) ends a raw wait early, and a hold restarted on each
// of those would never run out.
func (w *Worker) holdFor() int {
	if w.holdMs <= 0 {
		return w.holdMs
	}
	if rem := w.holdMs - int(time.Since(w.active)/time.Millisecond); rem > 0 {
		return rem
	}
	return 0
}
