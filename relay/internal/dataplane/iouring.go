//go:build linux

package dataplane

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/internal/uring"
)

// The io_uring loop. Every socket of the worker has one multishot recvmsg armed: the kernel
// receives datagrams into the worker's provided buffers as they arrive, and the worker's
// sends go into the same ring. One io_uring_enter per round submits the round's sends,
// receives what has arrived, and waits when there is nothing: one system call where the
// epoll loop makes up to three (epoll_wait, recvmmsg, sendmmsg); what that buys is in the
// README ("Performance"). The loop reaps completions through uring.Ring.Reap and never reads
// the rings itself.

// user_data of a request: what it is in the top byte, the fd or buffer below.
const (
	udRecv   = 1 << 56
	udSend   = 2 << 56
	udWake   = 3 << 56
	udCancel = 4 << 56
	udTagMsk = 0xff << 56
)

// uringState is the io_uring loop's bookkeeping. Owned by the loop.
type uringState struct {
	ring     *uring.Ring
	cur      uint16 // the buffer of the datagram being handled
	held     bool   // a send took the current buffer
	free     int    // buffers the kernel may fill
	returned bool   // buffers were put back since the last publish
	armed    int    // multishot requests (recv and poll) not yet ended
	inFlight int    // sends not yet completed
	unsent   uint32 // sends prepared but not yet submitted
	rearm    []*loopSock
	syncs    []chan struct{} // opSync dones waiting for this round's sends to be submitted
	stopping bool
	reaped   int             // receives and ops of the current reap
	handle   func(uring.CQE) // w.onCQE, made once so that reaping allocates nothing
}

func newUringState(w *Worker, u *uring.Ring) *uringState {
	return &uringState{ring: u, free: uring.Bufs, rearm: make([]*loopSock, 0, 16), handle: w.onCQE}
}

// runUring runs the loop on ring u until the worker is stopped; it tears the ring down
// before it returns (every request ended, so no socket stays referenced by the ring).
func (w *Worker) runUring(u *uring.Ring) {
	st := newUringState(w, u)
	w.u = st
	defer func() {
		w.drainUring()
		w.u = nil
		u.Close()
	}()
	for _, s := range w.socks {
		w.arm(s)
	}
	for {
		if w.reap() > 0 && w.holdMs > 0 {
			w.active = time.Now()
		}
		if st.stopping {
			return
		}
		if len(st.syncs) > 0 {
			w.endSyncs()
		}
		if st.unsent > 0 {
			beforeSend()
		}
		// Raw for as long as the hold lasts (-1: no end), then through the runtime (see
		// Config.HoldMs); a wait that times out comes back here and parks.
		min := st.waitTarget()
		var e unix.Errno
		if hold := w.holdFor(); hold == 0 {
			e = u.Enter(min, false, 0)
		} else {
			e = u.Enter(min, true, max(hold, 0))
		}
		if u.Pending() == 0 {
			st.unsent = 0
		}
		switch e {
		case 0, unix.ETIME, unix.EAGAIN, unix.EBUSY:
			// Completions are ready, or the kernel wants its completion queue reaped first.
		case unix.EINTR:
			// A signal: most likely the runtime asking this goroutine to yield. Yield here,
			// at a safe point (see runEpoll).
			runtime.Gosched()
		default:
			w.log.Error("relay: io_uring_enter failed; worker stops", "worker", w.id, "err", e)
			st.stopping = true
			return
		}
	}
}

// nextSQE returns a free submission entry, submitting what is queued when the queue is full.
func (w *Worker) nextSQE() *uring.SQE {
	u := w.u.ring
	if s := u.SQE(); s != nil {
		return s
	}
	_ = u.Enter(0, true, 0)
	if u.Pending() == 0 {
		w.u.unsent = 0
	}
	return u.SQE()
}

// arm starts the multishot request that reads s.
func (w *Worker) arm(s *loopSock) {
	if w.u.stopping {
		return
	}
	sq := w.nextSQE()
	if sq == nil {
		w.u.rearm = append(w.u.rearm, s)
		return
	}
	if s.kind == kindWake {
		w.u.ring.PrepPoll(sq, s.fd, udWake|uint64(s.fd))
	} else {
		w.u.ring.PrepRecv(sq, s.fd, udRecv|uint64(s.fd))
	}
	s.armed = true
	w.u.armed++
}

// reap handles every completion that is ready and says how many were receives or ops (the
// worker's own send completions are not activity).
func (w *Worker) reap() int {
	st := w.u
	u := st.ring
	st.reaped = 0
	u.Reap(st.handle)
	if st.returned {
		u.PublishBufs()
		st.returned = false
	}
	if len(st.rearm) > 0 && st.free > 0 && !st.stopping {
		pend := st.rearm
		st.rearm = st.rearm[:0]
		for i, s := range pend {
			pend[i] = nil
			if s.closing == nil && !s.armed {
				w.arm(s)
			}
		}
	}
	return st.reaped
}

// onCQE handles one completion: a receive, the end of a send, or the wake-up eventfd.
func (w *Worker) onCQE(c uring.CQE) {
	st := w.u
	switch c.UserData & udTagMsk {
	case udRecv:
		st.reaped++
		w.onRecv(c)
	case udSend:
		st.inFlight--
		w.putBuf(uint16(c.UserData))
		if c.Res < 0 {
			w.stats.drops[DropSendError].Add(1)
		}
	case udWake:
		st.reaped++
		s := w.socks[int32(c.UserData)]
		if !c.More() {
			st.armed--
			if s != nil {
				s.armed = false
				if !st.stopping {
					w.arm(s)
				}
			}
		}
		var b [8]byte
		_, _ = unix.Read(w.wakefd, b[:])
		if !w.runUringOps() {
			st.stopping = true
		}
	}
}

// onRecv handles a completion of a socket's multishot recvmsg: a datagram in a buffer, or
// the end of the request.
func (w *Worker) onRecv(c uring.CQE) {
	st := w.u
	s := w.socks[int32(c.UserData)]
	if bid, ok := c.Buffer(); ok {
		st.free--
		if c.Res >= 0 && s != nil && s.closing == nil {
			w.handleBuf(s, bid)
		} else {
			w.putBuf(bid)
		}
	}
	if c.More() {
		return
	}
	// The request ended: cancelled (closing or stopping), out of buffers (ENOBUFS), or an
	// error reported on the socket. Re-arm it unless the socket is going away.
	st.armed--
	if s == nil {
		return
	}
	s.armed = false
	if s.closing != nil {
		w.closeSock(s)
		return
	}
	if st.stopping {
		return
	}
	if c.Res == -int32(unix.ENOBUFS) && st.free == 0 {
		st.rearm = append(st.rearm, s) // when buffers come back
		return
	}
	w.arm(s)
}

// handleBuf relays or hands off the datagram in buffer bid.
func (w *Worker) handleBuf(s *loopSock, bid uint16) {
	st := w.u
	b := st.ring.Buf(bid)
	size, truncated := uring.Recvmsg(b)
	if truncated {
		w.stats.drops[DropTooLarge].Add(1)
		w.putBuf(bid)
		return
	}
	from := sock.Decode((*[sock.SockaddrSize]byte)(b[uring.NameOff:]))
	buf := (*[headroom + bufSize]byte)(b[uring.PayloadOff-headroom:])
	st.cur, st.held = bid, false
	if fd, d, to := w.classify(s, buf, size, from); to != nil {
		w.uringSend(fd, d, to)
	}
	if !st.held {
		w.putBuf(bid)
	}
}

// uringSend queues a send of b, which lies in the current buffer; the buffer goes back to the
// kernel when the send completes.
func (w *Worker) uringSend(fd int, b []byte, to *sock.RawAddr) {
	st := w.u
	sq := w.nextSQE()
	if st.held || sq == nil {
		w.stats.drops[DropSendError].Add(1)
		return
	}
	st.ring.PrepSend(sq, fd, st.cur, b, to, udSend|uint64(st.cur))
	st.held = true
	st.inFlight++
	st.unsent++
}

// waitTarget is the min_complete of the round's wait: one more than the sends the wait
// submits, since each of those posts its completion at once (a UDP send with MSG_DONTWAIT
// completes or fails inline), so that the wait ends on a packet or an op, not on the loop's
// own sends. With completions already waiting, the wait must not wait.
func (st *uringState) waitTarget() uint32 {
	if st.ring.Ready() {
		return 1
	}
	return st.unsent + 1
}

func (w *Worker) putBuf(bid uint16) {
	w.u.ring.PutBuf(bid)
	w.u.free++
	w.u.returned = true
}

// runUringOps runs the queued ops: a new relay socket is armed; a closing one has its
// request cancelled and is closed when the request has ended (closeSock), so that the ring
// never holds a descriptor that was reused. It reports false once the worker is stopped.
func (w *Worker) runUringOps() bool {
	ops, stopped := w.takeOps()
	for _, op := range ops {
		switch op.kind {
		case opAdd:
			w.socks[int32(op.s.fd)] = op.s
			w.arm(op.s)
		case opSync:
			// The sends this reap prepared name their socket by number until the kernel
			// takes them: the op is answered once they are submitted (endSyncs).
			w.u.syncs = append(w.u.syncs, op.done)
		case opClose:
			s := w.socks[int32(op.s.fd)]
			if s == nil {
				unix.Close(op.s.fd)
				close(op.done)
				continue
			}
			s.closing = op.done
			if !s.armed {
				w.closeSock(s)
				continue
			}
			sq := w.nextSQE()
			if sq == nil {
				// No room even after a submit: try again next round rather than never.
				s.closing = nil
				w.mu.Lock()
				w.ops = append(w.ops, op)
				w.mu.Unlock()
				w.wake()
				continue
			}
			// By the armed request's user_data (see arm), which the kernel looks up in a
			// hash, not by fd, which walks every armed request: one per relay socket.
			target := udRecv | uint64(s.fd)
			if s.kind == kindWake {
				target = udWake | uint64(s.fd)
			}
			w.u.ring.PrepCancel(sq, target, udCancel)
		}
	}
	return !stopped
}

// endSyncs submits the sends prepared so far, without waiting, and answers the opSyncs taken
// before them (see Quiesce). The kernel resolves a send's fd when it takes the request from
// the submission queue, and the request then holds the socket itself: the number may be
// closed and reused without the send noticing. (A UDP send with MSG_DONTWAIT also completes
// within that io_uring_enter.) It costs a system call in the rounds that had an op only.
func (w *Worker) endSyncs() {
	st := w.u
	if st.ring.Pending() > 0 {
		if e := st.ring.Enter(0, true, 0); e != 0 && e != unix.EINTR && e != unix.EAGAIN && e != unix.EBUSY {
			w.log.Error("relay: io_uring_enter failed; worker stops", "worker", w.id, "err", e)
			st.stopping = true // drainUring answers the syncs
			return
		}
		if st.ring.Pending() > 0 {
			return // not all taken (EAGAIN, EBUSY): try again next round
		}
		st.unsent = 0
	}
	for i, d := range st.syncs {
		close(d)
		st.syncs[i] = nil
	}
	st.syncs = st.syncs[:0]
}

// closeSock closes a relay socket whose request has ended and tells CloseRelay.
func (w *Worker) closeSock(s *loopSock) {
	delete(w.socks, int32(s.fd))
	unix.Close(s.fd)
	close(s.closing)
	s.closing = nil
}

// drainUring cancels every request and reaps until all have ended (bounded: 2 s), so that
// closing the ring leaves no socket referenced by it.
func (w *Worker) drainUring() {
	st := w.u
	st.stopping = true
	if sq := w.nextSQE(); sq != nil {
		st.ring.PrepCancelFD(sq, -1, udCancel)
	}
	deadline := time.Now().Add(2 * time.Second)
	for st.armed > 0 || st.inFlight > 0 {
		if e := st.ring.Enter(1, true, 100); e != 0 && e != unix.ETIME && e != unix.EINTR && e != unix.EAGAIN && e != unix.EBUSY {
			break
		}
		w.reap()
		if time.Now().After(deadline) {
			w.log.Warn("relay: io_uring requests still pending at shutdown", "worker", w.id, "armed", st.armed, "sends", st.inFlight)
			break
		}
	}
	// Relay sockets whose close was asked but whose request never reported its end.
	for _, s := range w.socks {
		if s.closing != nil {
			w.closeSock(s)
		}
	}
	// The loop ends: it sends nothing more.
	for i, d := range st.syncs {
		close(d)
		st.syncs[i] = nil
	}
	st.syncs = st.syncs[:0]
}
