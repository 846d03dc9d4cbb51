//go:build linux

package relay

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
)

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
func (w *worker) queue(fd int, b []byte, to *sock.RawAddr) {
	if w.u != nil {
		w.uringSend(fd, b, to)
		return
	}
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
func (w *worker) flush() {
	out := w.out
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].fd == out[i].fd {
			j++
		}
		if j-i == 1 {
			if err := sock.SendTo(out[i].fd, out[i].b, out[i].to); err != nil {
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

// sendBatch sends datagrams that all leave through one socket, grouping them for GSO.
func (w *worker) sendBatch(pkts []outPkt) {
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
				w.srv.log.Warn("relay: UDP GSO refused; sending datagrams one by one", "err", e)
				rest := pkts[w.firstPkt(segs, sent):]
				w.clearSend(nmsg, len(pkts))
				w.sendBatch(rest)
				return
			}
			// EAGAIN (socket buffer full) or an error on this message: its datagrams are
			// dropped, the rest are tried.
			w.stats.drops[dropSendError].Add(uint64(segs[sent]))
			sent++
			continue
		}
		sent += int(r)
	}
	w.clearSend(nmsg, len(pkts))
}

// firstPkt is the index of the first datagram of message m.
func (w *worker) firstPkt(segs []uint8, m int) int {
	n := 0
	for _, s := range segs[:m] {
		n += int(s)
	}
	return n
}

// clearSend drops the send state's references to the ring and the fast-path table.
func (w *worker) clearSend(nmsg, npkt int) {
	for i := 0; i < nmsg; i++ {
		w.smsgs[i].Hdr.Name = nil
		w.smsgs[i].Hdr.Control = nil
	}
	for i := 0; i < npkt; i++ {
		w.siovs[i].Base = nil
	}
}
