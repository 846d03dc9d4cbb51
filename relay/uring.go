//go:build linux

package relay

// A minimal io_uring, just what the forwarding loop needs: multishot recvmsg into a ring of
// provided buffers, sendmsg, a multishot poll and cancellation, over raw system calls (x/sys
// has no io_uring; this is small enough that we did not take a third-party port). The layouts
// below are those of <linux/io_uring.h>; the kernel's behaviour is io_uring_setup(2),
// io_uring_enter(2), io_uring_register(2) and io_uring_prep_recvmsg_multishot(3).

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/sock"
)

const (
	ioringOpPollAdd     = 6
	ioringOpSendmsg     = 9
	ioringOpRecvmsg     = 10
	ioringOpAsyncCancel = 14

	iosqeBufferSelect = 1 << 5

	ioringSetupCQSize       = 1 << 3
	ioringSetupSubmitAll    = 1 << 7
	ioringSetupCoopTaskrun  = 1 << 8
	ioringSetupSingleIssuer = 1 << 12
	ioringSetupDeferTaskrun = 1 << 13

	ioringFeatSingleMmap = 1 << 0
	ioringFeatNoDrop     = 1 << 1
	ioringFeatExtArg     = 1 << 8

	ioringPollAddMulti   = 1 << 0
	ioringRecvMultishot  = 1 << 1
	ioringAsyncCancelAll = 1 << 0
	ioringAsyncCancelFD  = 1 << 1
	ioringAsyncCancelAny = 1 << 2

	ioringCQEFBuffer      = 1 << 0
	ioringCQEFMore        = 1 << 1
	ioringCQEBufferShift  = 16
	ioringEnterGetEvents  = 1 << 0
	ioringEnterExtArg     = 1 << 3
	ioringOffSQRing       = 0
	ioringOffSQEs         = 0x10000000
	ioringRegisterPbufRng = 22
	ioringRegisterProbe   = 8
)

type ioSQRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	resv2                                                           uint64
}

type ioCQRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	resv2                                                           uint64
}

type ioUringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  ioSQRingOffsets
	cqOff                                                                  ioCQRingOffsets
}

// ioSQE is struct io_uring_sqe (64 bytes).
type ioSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32 // msg_flags, poll32_events, cancel_flags
	userData    uint64
	bufGroup    uint16
	personality uint16
	fileIndex   uint32
	addr3       uint64
	pad         uint64
}

// ioCQE is struct io_uring_cqe (16 bytes).
type ioCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// ioRecvmsgOut is struct io_uring_recvmsg_out: what a multishot recvmsg writes at the start
// of each buffer, before the source address and the payload.
type ioRecvmsgOut struct {
	namelen, controllen, payloadlen, flags uint32
}

type ioBufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	pad         uint16
	resv        [3]uint64
}

type ioGeteventsArg struct {
	sigmask   uint64
	sigmaskSz uint32
	pad       uint32
	ts        uint64
}

// The buffer layout of a multishot recvmsg (io_uring_recvmsg_out, then msg_namelen bytes of
// address, then the payload). The payload starts at uringPayloadOff; the 4 bytes before it
// (the end of the address, already decoded) take the ChannelData header when the datagram
// is relayed to a client, so the loop's handlers see the same headroom as with recvmmsg.
const (
	uringNameOff    = int(unsafe.Sizeof(ioRecvmsgOut{}))
	uringPayloadOff = uringNameOff + unix.SizeofSockaddrInet6
	uringBufOff     = uringPayloadOff - headroom // where a handler's buffer starts
	uringBufLen     = uringPayloadOff + bufSize  // what the kernel may fill
	uringBufStride  = (uringBufLen + 63) &^ 63
	uringBufs       = 512 // per worker, a power of two
	uringSQEntries  = 512
	uringCQEntries  = 4096
	uringBufGroup   = 0
)

// errUringUnavailable wraps why the kernel cannot run the io_uring loop.
var errUringUnavailable = errors.New("io_uring unavailable")

// uring is one worker's ring. Used by its loop's OS thread only (the ring is created with
// SINGLE_ISSUER and DEFER_TASKRUN: completions are produced when that thread enters).
type uring struct {
	fd       int
	ringMem  []byte
	sqeMem   []byte
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqes     []ioSQE
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     []ioCQE
	sqLocal  uint32 // our tail (SQEs prepared, maybe not yet submitted)
	bufRing  []byte // io_uring_buf_ring: uringBufs entries of 16 bytes
	bufMem   []byte // uringBufs buffers of uringBufStride bytes
	bufTail  uint16
	recvMsg  unix.Msghdr // the template of every multishot recvmsg
	sendMsgs [uringBufs]unix.Msghdr
	sendIovs [uringBufs]unix.Iovec
	sendTo   [uringBufs]sock.RawAddr
}

// newUring sets up a ring with its provided buffers. The caller's OS thread becomes its only
// submitter.
func newUring() (*uring, error) {
	p := ioUringParams{
		cqEntries: uringCQEntries,
		flags: ioringSetupCQSize | ioringSetupSubmitAll | ioringSetupCoopTaskrun |
			ioringSetupSingleIssuer | ioringSetupDeferTaskrun,
	}
	r, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, uringSQEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %v", errUringUnavailable, e)
	}
	u := &uring{fd: int(r)}
	ok := false
	defer func() {
		if !ok {
			u.close()
		}
	}()
	if p.features&ioringFeatSingleMmap == 0 || p.features&ioringFeatNoDrop == 0 || p.features&ioringFeatExtArg == 0 {
		return nil, fmt.Errorf("%w: kernel too old (features %#x)", errUringUnavailable, p.features)
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(ioCQE{}))
	size := max(sqSize, cqSize)
	mem, err := unix.Mmap(u.fd, ioringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap rings: %v", errUringUnavailable, err)
	}
	u.ringMem = mem
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(ioSQE{}))
	sqeMem, err := unix.Mmap(u.fd, ioringOffSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap SQEs: %v", errUringUnavailable, err)
	}
	u.sqeMem = sqeMem
	u.sqHead = (*uint32)(unsafe.Pointer(&mem[p.sqOff.head]))
	u.sqTail = (*uint32)(unsafe.Pointer(&mem[p.sqOff.tail]))
	u.sqMask = *(*uint32)(unsafe.Pointer(&mem[p.sqOff.ringMask]))
	u.sqes = unsafe.Slice((*ioSQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&mem[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i) // SQE i sits in slot i, always
	}
	u.sqLocal = atomic.LoadUint32(u.sqTail)
	u.cqHead = (*uint32)(unsafe.Pointer(&mem[p.cqOff.head]))
	u.cqTail = (*uint32)(unsafe.Pointer(&mem[p.cqOff.tail]))
	u.cqMask = *(*uint32)(unsafe.Pointer(&mem[p.cqOff.ringMask]))
	u.cqes = unsafe.Slice((*ioCQE)(unsafe.Pointer(&mem[p.cqOff.cqes])), p.cqEntries)

	// The provided buffers and their ring live outside the Go heap: the kernel writes into
	// them whenever a datagram arrives.
	if u.bufRing, err = unix.Mmap(-1, 0, uringBufs*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("relay: io_uring buffer ring: %w", err)
	}
	if u.bufMem, err = unix.Mmap(-1, 0, uringBufs*uringBufStride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("relay: io_uring buffers: %w", err)
	}
	reg := ioBufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&u.bufRing[0]))), ringEntries: uringBufs, bgid: uringBufGroup}
	if _, _, e := unix.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(u.fd), ioringRegisterPbufRng,
		uintptr(unsafe.Pointer(&reg)), 1, 0, 0); e != 0 {
		return nil, fmt.Errorf("%w: register provided buffer ring: %v", errUringUnavailable, e)
	}
	for bid := 0; bid < uringBufs; bid++ {
		u.putBuf(uint16(bid))
	}
	u.publishBufs()
	u.recvMsg.Namelen = unix.SizeofSockaddrInet6
	for i := range u.sendMsgs {
		u.sendMsgs[i].Name = u.sendTo[i].Ptr()
		u.sendMsgs[i].Iov = &u.sendIovs[i]
		u.sendMsgs[i].Iovlen = 1
	}
	ok = true
	return u, nil
}

func (u *uring) close() {
	if u.fd >= 0 {
		unix.Close(u.fd)
		u.fd = -1
	}
	for _, m := range [][]byte{u.sqeMem, u.ringMem, u.bufMem, u.bufRing} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	u.sqeMem, u.ringMem, u.bufMem, u.bufRing = nil, nil, nil, nil
}

// buf returns buffer bid.
func (u *uring) buf(bid uint16) []byte {
	off := int(bid) * uringBufStride
	return u.bufMem[off : off+uringBufStride : off+uringBufStride]
}

// putBuf hands buffer bid back to the kernel (visible after publishBufs).
func (u *uring) putBuf(bid uint16) {
	e := unsafe.Slice((*uint64)(unsafe.Pointer(&u.bufRing[int(u.bufTail&(uringBufs-1))*16])), 2)
	e[0] = uint64(uintptr(unsafe.Pointer(&u.buf(bid)[0])))
	// len (4 bytes) and bid (2 bytes); the last 2 bytes of entry 0 are the ring's tail.
	l := (*uint32)(unsafe.Pointer(&e[1]))
	*l = uint32(uringBufLen)
	*(*uint16)(unsafe.Add(unsafe.Pointer(l), 4)) = bid
	u.bufTail++
}

// publishBufs makes the buffers put since the last call visible to the kernel: a release
// store of the ring's 16-bit tail, done as a 32-bit atomic store of the word that holds it
// together with entry 0's bid (which only this thread writes).
func (u *uring) publishBufs() {
	w := (*uint32)(unsafe.Pointer(&u.bufRing[12]))
	bid0 := uint32(*(*uint16)(unsafe.Pointer(&u.bufRing[12])))
	atomic.StoreUint32(w, bid0|uint32(u.bufTail)<<16)
}

// sqe returns the next free SQE, zeroed, or nil if the submission queue is full.
func (u *uring) sqe() *ioSQE {
	if u.sqLocal-atomic.LoadUint32(u.sqHead) >= uint32(len(u.sqes)) {
		return nil
	}
	s := &u.sqes[u.sqLocal&u.sqMask]
	*s = ioSQE{}
	u.sqLocal++
	return s
}

// pending is how many prepared SQEs the kernel has not consumed.
func (u *uring) pending() uint32 {
	atomic.StoreUint32(u.sqTail, u.sqLocal)
	return u.sqLocal - atomic.LoadUint32(u.sqHead)
}

// enter submits what is pending and, if min > 0, waits until at least min completions are
// ready: raw (the thread keeps its P; a signal ends the wait with EINTR) or through the
// runtime's syscall path (the P goes to other goroutines meanwhile). ms > 0 bounds the wait.
func (u *uring) enter(min uint32, raw bool, ms int) unix.Errno {
	toSubmit := u.pending()
	// GETEVENTS even without waiting: with DEFER_TASKRUN that is when the kernel does the
	// receives that are due and posts their completions.
	var minComplete, flags uintptr = uintptr(min), ioringEnterGetEvents
	var arg, argSize uintptr
	var ts unix.Timespec
	var ga ioGeteventsArg
	if min > 0 && ms > 0 {
		ts = unix.NsecToTimespec(int64(ms) * 1e6)
		ga.ts = uint64(uintptr(unsafe.Pointer(&ts)))
		arg, argSize = uintptr(unsafe.Pointer(&ga)), unsafe.Sizeof(ga)
		flags |= ioringEnterExtArg
	}
	var e unix.Errno
	if raw {
		_, _, e = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), uintptr(toSubmit), minComplete, flags, arg, argSize)
	} else {
		_, _, e = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), uintptr(toSubmit), minComplete, flags, arg, argSize)
	}
	return e
}

// prepRecv arms a multishot recvmsg on fd into the provided buffers.
func (u *uring) prepRecv(s *ioSQE, fd int, userData uint64) {
	s.opcode = ioringOpRecvmsg
	s.flags = iosqeBufferSelect
	s.ioprio = ioringRecvMultishot
	s.fd = int32(fd)
	s.addr = uint64(uintptr(unsafe.Pointer(&u.recvMsg)))
	s.bufGroup = uringBufGroup
	s.userData = userData
}

// prepPoll arms a multishot poll for readability of fd.
func (u *uring) prepPoll(s *ioSQE, fd int, userData uint64) {
	s.opcode = ioringOpPollAdd
	s.fd = int32(fd)
	s.len = ioringPollAddMulti
	s.opFlags = unix.POLLIN
	s.userData = userData
}

// prepCancelFD cancels every request on fd (or, with fd < 0, every request).
func (u *uring) prepCancelFD(s *ioSQE, fd int, userData uint64) {
	s.opcode = ioringOpAsyncCancel
	s.fd = int32(fd)
	s.opFlags = ioringAsyncCancelAll | ioringAsyncCancelFD
	if fd < 0 {
		s.opFlags = ioringAsyncCancelAny | ioringAsyncCancelAll
	}
	s.userData = userData
}

// prepSend sends b (which lies in buffer bid) to to through fd. The address is copied: the
// fast-path entry it came from may go before the send completes.
func (u *uring) prepSend(s *ioSQE, fd int, bid uint16, b []byte, to *sock.RawAddr, userData uint64) {
	u.sendTo[bid] = *to
	m := &u.sendMsgs[bid]
	m.Namelen = to.Len()
	u.sendIovs[bid].Base = unsafe.SliceData(b) // an empty datagram is legal
	u.sendIovs[bid].SetLen(len(b))
	s.opcode = ioringOpSendmsg
	s.fd = int32(fd)
	s.addr = uint64(uintptr(unsafe.Pointer(m)))
	s.len = 1
	// MSG_DONTWAIT: a full send buffer fails the send (EAGAIN, counted as a drop) instead of
	// parking it until the socket drains, which would hold its buffer and, were that to
	// happen to many, stall the worker's receives. The epoll loop drops the same way.
	s.opFlags = unix.MSG_DONTWAIT
	s.userData = userData
}

var (
	uringProbeOnce sync.Once
	uringProbeErr  error
)

// uringUsable reports whether this kernel runs the io_uring loop: it sets up a ring the way
// a worker does and relays one datagram over loopback through a multishot recvmsg and a
// sendmsg. The answer is cached.
func uringUsable() error {
	uringProbeOnce.Do(func() { uringProbeErr = probeUring() })
	return uringProbeErr
}

func probeUring() error {
	// The ring's only submitter is the thread that made it (SINGLE_ISSUER).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	u, err := newUring()
	if err != nil {
		return err
	}
	defer u.close()
	fail := func(what string, e error) error { return fmt.Errorf("%w: probe: %s: %v", errUringUnavailable, what, e) }
	var fds [2]int
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail("socket", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return fail("bind", err)
		}
		fds[i] = fd
	}
	sa, err := unix.Getsockname(fds[1])
	if err != nil {
		return fail("getsockname", err)
	}
	u.prepRecv(u.sqe(), fds[1], 1)
	if e := u.enter(0, true, 0); e != 0 {
		return fail("submit recvmsg", e)
	}
	if err := unix.Sendto(fds[0], []byte("avedge"), 0, sa); err != nil {
		return fail("send", err)
	}
	// The datagram is already queued on the socket: one bounded wait completes it.
	if e := u.enter(1, true, 1000); e != 0 {
		return fail("wait", e)
	}
	head := atomic.LoadUint32(u.cqHead)
	if atomic.LoadUint32(u.cqTail) == head {
		return fail("wait", errors.New("no completion within 1s"))
	}
	c := u.cqes[head&u.cqMask]
	atomic.StoreUint32(u.cqHead, head+1)
	if c.res < 0 {
		return fail("multishot recvmsg", unix.Errno(-c.res))
	}
	if c.flags&ioringCQEFBuffer == 0 || c.flags&ioringCQEFMore == 0 {
		return fail("multishot recvmsg", fmt.Errorf("completion flags %#x", c.flags))
	}
	b := u.buf(uint16(c.flags >> ioringCQEBufferShift))
	out := (*ioRecvmsgOut)(unsafe.Pointer(&b[0]))
	if out.payloadlen != 6 || string(b[uringPayloadOff:uringPayloadOff+6]) != "avedge" {
		return fail("multishot recvmsg", fmt.Errorf("payload %d bytes", out.payloadlen))
	}
	return nil
}
