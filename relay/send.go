//go:build linux

package relay

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// queue adds a datagram to the round's sends. b must stay valid until the flush: it points
// into the worker's ring, which is only reused after a flush.
func (w *worker) queue(fd int, b []byte, to *rawAddr) {
	if len(w.out) == cap(w.out) {
		w.flush()
	}
	w.out = append(w.out, outPkt{fd: fd, b: b, to: to})
}

// flush sends what the round queued: one sendmmsg per run of datagrams for the same socket
// (peer→client traffic of many allocations leaves through one listener socket, so it
// batches), a plain sendto for a run of one. Order within a socket is kept.
func (w *worker) flush() {
	out := w.out
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].fd == out[i].fd {
			j++
		}
		if j-i == 1 {
			if err := sendTo(out[i].fd, out[i].b, out[i].to); err != nil {
				w.stats.drops[dropSendError].Add(1)
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

func (w *worker) sendBatch(pkts []outPkt) {
	fd := pkts[0].fd
	for i := range pkts {
		w.siovs[i].Base = &pkts[i].b[0]
		w.siovs[i].SetLen(len(pkts[i].b))
		w.smsgs[i].Hdr.Name = &pkts[i].to.buf[0]
		w.smsgs[i].Hdr.Namelen = pkts[i].to.len
	}
	sent := 0
	for sent < len(pkts) {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&w.smsgs[sent])),
			uintptr(len(pkts)-sent), unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			if e == unix.EINTR {
				continue
			}
			// EAGAIN (socket buffer full) or an error on the first datagram: that one is
			// dropped, the rest are tried.
			w.stats.drops[dropSendError].Add(1)
			sent++
			continue
		}
		sent += int(r)
	}
	for i := range pkts {
		w.smsgs[i].Hdr.Name = nil
		w.siovs[i].Base = nil
	}
}
