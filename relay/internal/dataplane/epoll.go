//go:build linux

package dataplane

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
)

// The epoll loop: wait for readiness with epoll_wait, drain each ready socket with recvmmsg
// into the worker's ring of buffers, classify each datagram, and send what the round
// forwarded with one sendmmsg per destination socket (UDP GSO where the datagrams allow).

// runEpoll runs the epoll loop until the worker is stopped or epoll_wait fails.
func (w *Worker) runEpoll() {
	busy, interrupted := false, false
	for {
		// Wait for readiness without the runtime's syscall bookkeeping: when the program has
		// a scheduler slot (P) to spare beside the workers, the worker keeps its P while it
		// waits (holdMs: -1 for as long as it takes, see Config.HoldMs), so a packet costs
		// one wake-up of this thread and nothing else; a worker that must share parks through
		// the runtime, which hands its P to other goroutines meanwhile, and only polls raw
		// when the last round was busy.
		n, errno := 0, unix.Errno(0)
		if hold := w.holdFor(); interrupted && hold != 0 {
			// The wait after a signal is one the runtime sees (a system call): a GC cycle
			// asks each P several times (stop-the-world, stack scan, safe-point rounds), and
			// while the worker is in a system call the runtime takes its P or scans it
			// without this thread having to run, which on a loaded machine can take tens of
			// milliseconds per request (seconds per GC cycle, measured).
			var err error
			if n, err = unix.EpollWait(w.epfd, w.events[:], hold); err != nil {
				errno = err.(unix.Errno)
			}
			interrupted = false
		} else if hold != 0 || busy {
			n, errno = epollWaitRaw(w.epfd, w.events[:], hold)
		}
		if errno == unix.EINTR {
			// A signal: most likely the runtime asking this goroutine to yield (a
			// stop-the-world, the GC, or the scheduler's 10ms preemption). Yield here, at a
			// safe point, or the request would land in the kernel again on every retry.
			runtime.Gosched()
			interrupted = true
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
				w.log.Error("relay: epoll_wait failed; worker stops", "worker", w.id, "err", err)
				return
			}
		} else if errno != 0 {
			w.log.Error("relay: epoll_wait failed; worker stops", "worker", w.id, "err", errno)
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
		if len(w.out) > 0 {
			beforeSend()
		}
		w.flush()
	}
}

// epollWaitRaw waits up to ms milliseconds (0: a poll) without entering the scheduler's
// syscall path: the P stays with this thread. A signal (the runtime's preemption request)
// ends the wait with EINTR, so the goroutine still yields when the runtime asks.
func epollWaitRaw(epfd int, events []unix.EpollEvent, ms int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(ms), 0, 0)
	return int(r), e
}

// runOps runs the queued ops and reports false once the worker is stopped.
func (w *Worker) runOps() bool {
	ops, stopped := w.takeOps()
	for _, op := range ops {
		switch op.kind {
		case opAdd:
			if err := w.register(op.s); err != nil {
				w.log.Error("relay: worker cannot watch relay socket", "worker", w.id, "err", err)
			}
		case opSync:
			// runOps runs right after a flush: nothing the loop classified waits to be sent.
			close(op.done)
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

// readSock drains a ready socket in batches and handles each datagram.
func (w *Worker) readSock(s *loopSock) {
	for round := 0; round < maxReadsPerSocket; round++ {
		if ringSize-w.next < batchSize {
			w.flush()
		}
		k := batchSize
		base := w.next
		for i := 0; i < k; i++ {
			buf := &w.bufs[base+i]
			w.riovs[i].Base = &buf[headroom]
			w.riovs[i].SetLen(bufSize)
			w.rmsgs[i].Hdr.Namelen = sock.SockaddrSize
			w.rmsgs[i].Hdr.Flags = 0
		}
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&w.rmsgs[0])),
			uintptr(k), unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			// EAGAIN: drained. Anything else (an ICMP error reported on the socket) is not
			// fatal for a UDP socket: try again next time it is ready.
			return
		}
		n := int(r)
		for i := 0; i < n; i++ {
			if w.rmsgs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
				w.stats.drops[DropTooLarge].Add(1)
				continue
			}
			w.handle(s, &w.bufs[base+i], int(w.rmsgs[i].Len), sock.Decode(&w.rnames[i]))
		}
		w.next = base + n
		if n < k {
			return // the socket is drained; epoll says when more arrives
		}
	}
}

// handle classifies one received datagram and queues its send if it is forwarded.
func (w *Worker) handle(s *loopSock, buf *[headroom + bufSize]byte, size int, from netip.AddrPort) {
	if fd, b, to := w.classify(s, buf, size, from); to != nil {
		w.queue(fd, b, to)
	}
}

// outPkt is a datagram waiting for the round's flush.
type outPkt struct {
	fd int
	b  []byte
	to *sock.RawAddr
}

// maxGSOSegments bounds the datagrams of one UDP_SEGMENT send (the kernel's UDP_MAX_SEGMENTS
// is 64 on older kernels), and maxGSOBytes the super-datagram they make.
const (
	maxGSOSegments = 64
	maxGSOBytes    = 65000
)

// gsoCmsgSpace is the room one UDP_SEGMENT control message takes.
var gsoCmsgSpace = unix.CmsgSpace(2)

// queue adds a datagram to the round's sends. b must stay valid until the flush: it points
// into the worker's ring, which is only reused after a flush.
func (w *Worker) queue(fd int, b []byte, to *sock.RawAddr) {
	if len(w.out) == cap(w.out) {
		w.flush()
	}
	w.out = append(w.out, outPkt{fd: fd, b: b, to: to})
}

// flush sends what the round queued: one sendmmsg per run of datagrams for the same socket
// (peer→client traffic of many allocations leaves through one listener socket, so it
// batches), a plain sendto for a lone datagram. Within a run, consecutive datagrams to the same
// destination with the same size (the last may be shorter) leave as one UDP GSO send
// (UDP_SEGMENT): the stack handles them as one packet and splits them at the end, which is
// where a busy flow saves most. Order within a socket is kept.
func (w *Worker) flush() {
	out := w.out
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].fd == out[i].fd {
			j++
		}
		if j-i == 1 {
			if err := sock.SendTo(out[i].fd, out[i].b, out[i].to); err != nil {
				w.stats.drops[DropSendError].Add(1)
			}
		} else {
			w.sendBatch(out[i:j])
		}
		i = j
	}
	for i := range out {
		out[i] = outPkt{}
	}
	w.out = out[:0]
	w.next = 0
}

// sendBatch sends datagrams that all leave through one socket, grouping them for GSO.
func (w *Worker) sendBatch(pkts []outPkt) {
	fd := pkts[0].fd
	nmsg := 0
	segs := w.segs[:0] // datagrams per message, to count drops exactly
	for i := 0; i < len(pkts); {
		size := len(pkts[i].b)
		j, total := i+1, size
		if !w.noGSO && size > 0 { // an empty datagram cannot be a GSO segment
			for j < len(pkts) && j-i < maxGSOSegments && pkts[j].to == pkts[i].to &&
				len(pkts[j].b) <= size && total+len(pkts[j].b) <= maxGSOBytes {
				total += len(pkts[j].b)
				j++
				if len(pkts[j-1].b) < size {
					break // a shorter datagram ends a GSO group
				}
			}
		}
		for k := i; k < j; k++ {
			w.siovs[k].Base = unsafe.SliceData(pkts[k].b) // an empty datagram is legal
			w.siovs[k].SetLen(len(pkts[k].b))
		}
		h := &w.smsgs[nmsg].Hdr
		h.Iov = &w.siovs[i]
		h.SetIovlen(j - i)
		h.Name = pkts[i].to.Ptr()
		h.Namelen = pkts[i].to.Len()
		if j-i > 1 {
			c := w.cmsgs[nmsg][:]
			ch := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			ch.Level = unix.SOL_UDP
			ch.Type = unix.UDP_SEGMENT
			ch.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(size))
			h.Control = &c[0]
			h.SetControllen(gsoCmsgSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		segs = append(segs, uint8(j-i))
		nmsg++
		i = j
	}
	sent := 0
	for sent < nmsg {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&w.smsgs[sent])),
			uintptr(nmsg-sent), unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			if (e == unix.EIO || e == unix.EINVAL || e == unix.ENOPROTOOPT) && segs[sent] > 1 && !w.noGSO {
				// The kernel or device refuses GSO: stop using it and send the rest plainly.
				w.noGSO = true
				w.log.Warn("relay: UDP GSO refused; sending datagrams one by one", "err", e)
				rest := pkts[w.firstPkt(segs, sent):]
				w.clearSend(nmsg, len(pkts))
				w.sendBatch(rest)
				return
			}
			// EAGAIN (socket buffer full) or an error on this message: its datagrams are
			// dropped, the rest are tried.
			w.stats.drops[DropSendError].Add(uint64(segs[sent]))
			sent++
			continue
		}
		sent += int(r)
	}
	w.clearSend(nmsg, len(pkts))
}

// firstPkt is the index of the first datagram of message m.
func (w *Worker) firstPkt(segs []uint8, m int) int {
	n := 0
	for _, s := range segs[:m] {
		n += int(s)
	}
	return n
}

// clearSend drops the send state's references to the ring and the fast-path table.
func (w *Worker) clearSend(nmsg, npkt int) {
	for i := 0; i < nmsg; i++ {
		w.smsgs[i].Hdr.Name = nil
		w.smsgs[i].Hdr.Control = nil
	}
	for i := 0; i < npkt; i++ {
		w.siovs[i].Base = nil
	}
}
