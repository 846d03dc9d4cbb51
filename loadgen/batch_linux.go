//go:build linux

package loadgen

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSys holds the recvmmsg/sendmmsg headers of a batch, pointing at its buffers, and the
// functions handed to the socket's RawConn, built once so that a call allocates nothing.
type batchSys struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec

	conn *net.UDPConn    // the socket rc belongs to
	rc   syscall.RawConn // conn's
	// Set by readFn and writeFn for the call that runs them.
	n      int // recvmmsg: datagrams received; sendmmsg: datagrams to send
	sent   int
	failed int
	errno  unix.Errno

	readFn, writeFn func(fd uintptr) bool
}

func (s *batchSys) init(b *dgramBatch) {
	n := len(b.bufs)
	s.hdrs = make([]unix.Mmsghdr, n)
	s.iovs = make([]unix.Iovec, n)
	for i := range n {
		s.iovs[i].Base = &b.bufs[i][0]
		s.iovs[i].SetLen(len(b.bufs[i]))
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	s.readFn = func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[0])),
			uintptr(len(s.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN {
			return false // nothing queued: wait in the poller
		}
		s.n, s.errno = int(r), e
		return true
	}
	s.writeFn = func(fd uintptr) bool {
		for s.sent < s.n {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.hdrs[s.sent])),
				uintptr(s.n-s.sent), unix.MSG_DONTWAIT, 0, 0)
			switch {
			case e == unix.EAGAIN:
				return false // the send buffer is full: wait until it drains
			case e == unix.EINTR:
			case e != 0:
				// An error on this datagram (an ICMP error reported on the socket): it is
				// lost; the rest are tried.
				s.failed++
				s.sent++
			default:
				s.sent += int(r)
			}
		}
		return true
	}
}

// rawConn returns c's RawConn, kept while the batch is used on c.
func (s *batchSys) rawConn(c *net.UDPConn) (syscall.RawConn, error) {
	if s.conn != c {
		rc, err := c.SyscallConn()
		if err != nil {
			return nil, err
		}
		s.conn, s.rc = c, rc
	}
	return s.rc, nil
}

// recv receives up to len(b.bufs) datagrams on c (a connected socket: their source is its
// peer) with one recvmmsg, waiting in Go's network poller (not in the kernel) while none is
// queued, and records their lengths. An error other than net.ErrClosed (an ICMP error
// reported on the socket) leaves the socket usable.
func (b *dgramBatch) recv(c *net.UDPConn) (int, error) {
	s := &b.sys
	rc, err := s.rawConn(c)
	if err != nil {
		return 0, err
	}
	for i := range s.hdrs {
		s.iovs[i].SetLen(len(b.bufs[i]))
		s.hdrs[i].Hdr.Flags = 0
	}
	s.n, s.errno = 0, 0
	if err := rc.Read(s.readFn); err != nil {
		return 0, err
	}
	if s.errno != 0 {
		return 0, s.errno
	}
	for i := range s.n {
		b.lens[i] = int(s.hdrs[i].Len)
	}
	return s.n, nil
}

// send sends b.bufs[i][:b.lens[i]] for i < n on c (to its connected address), with one
// sendmmsg when the socket takes them all. It returns how many datagrams could not be sent.
func (b *dgramBatch) send(c *net.UDPConn, n int) (failed int) {
	s := &b.sys
	rc, err := s.rawConn(c)
	if err != nil {
		return n
	}
	for i := range n {
		s.iovs[i].SetLen(b.lens[i])
	}
	s.n, s.sent, s.failed = n, 0, 0
	if err := rc.Write(s.writeFn); err != nil {
		s.failed += n - s.sent // closed, or the descriptor failed
	}
	return s.failed
}
