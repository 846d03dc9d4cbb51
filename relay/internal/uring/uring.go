//go:build linux

package uring

// The layouts below are those of <linux/io_uring.h>; the kernel's behaviour is
// io_uring_setup(2), io_uring_enter(2), io_uring_register(2) and
// io_uring_prep_recvmsg_multishot(3).

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

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32 // msg_flags, poll32_events, cancel_flags
	UserData    uint64
	bufGroup    uint16
	personality uint16
	fileIndex   uint32
	addr3       uint64
	pad         uint64
}

// CQE is struct io_uring_cqe (16 bytes): one completion.
type CQE struct {
	UserData uint64 // what the request was prepared with
	Res      int32  // the result: a length or count, or -errno
	Flags    uint32 // IORING_CQE_F_*
}

// Buffer reports the provided buffer the completion filled, if it took one.
func (c CQE) Buffer() (bid uint16, ok bool) {
	return uint16(c.Flags >> ioringCQEBufferShift), c.Flags&ioringCQEFBuffer != 0
}

// More reports that a multishot request goes on after this completion (IORING_CQE_F_MORE);
// false means it has ended.
func (c CQE) More() bool { return c.Flags&ioringCQEFMore != 0 }

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

// The buffer layout of a multishot recvmsg: io_uring_recvmsg_out, then msg_namelen bytes of
// address, then the payload. The payload starts at PayloadOff; the bytes before it (the end
// of the address, already decoded) are free for a caller to write a header into in place.
const (
	NameOff    = int(unsafe.Sizeof(ioRecvmsgOut{})) // the source address (sock.SockaddrSize bytes)
	PayloadOff = NameOff + sock.SockaddrSize        // the datagram
	Bufs       = 512                                // provided buffers per ring, a power of two
	sqEntries  = 512
	cqEntries  = 4096
	bufGroup   = 0
)

// Recvmsg decodes the header a multishot recvmsg wrote at the start of buffer b: the
// datagram's length and whether the kernel truncated it (MSG_TRUNC).
func Recvmsg(b []byte) (payload int, truncated bool) {
	out := (*ioRecvmsgOut)(unsafe.Pointer(&b[0]))
	return int(out.payloadlen), out.flags&unix.MSG_TRUNC != 0
}

// ErrUnavailable wraps why the kernel cannot run the io_uring loop.
var ErrUnavailable = errors.New("io_uring unavailable")

// Ring is one worker's ring. Used by its loop's OS thread only (the ring is created with
// SINGLE_ISSUER and DEFER_TASKRUN: completions are produced when that thread enters).
type Ring struct {
	fd       int
	ringMem  []byte
	sqeMem   []byte
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqes     []SQE
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     []CQE
	sqLocal  uint32 // our tail (SQEs prepared, maybe not yet submitted)
	bufRing  []byte // io_uring_buf_ring: Bufs entries of 16 bytes
	bufMem   []byte // Bufs buffers of stride bytes
	stride   int    // bytes per buffer (a multiple of 64)
	bufLen   uint32 // what the kernel may fill of a buffer: PayloadOff + the payload size
	bufTail  uint16
	recvMsg  unix.Msghdr // the template of every multishot recvmsg
	sendMsgs [Bufs]unix.Msghdr
	sendIovs [Bufs]unix.Iovec
	sendTo   [Bufs]sock.RawAddr
}

// New sets up a ring with its provided buffers, each taking a datagram of up to payload bytes
// after its header and address. The caller's OS thread becomes its only submitter.
func New(payload int) (*Ring, error) {
	p := ioUringParams{
		cqEntries: cqEntries,
		flags: ioringSetupCQSize | ioringSetupSubmitAll | ioringSetupCoopTaskrun |
			ioringSetupSingleIssuer | ioringSetupDeferTaskrun,
	}
	r, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, sqEntries, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("%w: io_uring_setup: %v", ErrUnavailable, e)
	}
	u := &Ring{fd: int(r), bufLen: uint32(PayloadOff + payload)}
	u.stride = (int(u.bufLen) + 63) &^ 63
	ok := false
	defer func() {
		if !ok {
			u.Close()
		}
	}()
	if p.features&ioringFeatSingleMmap == 0 || p.features&ioringFeatNoDrop == 0 || p.features&ioringFeatExtArg == 0 {
		return nil, fmt.Errorf("%w: kernel too old (features %#x)", ErrUnavailable, p.features)
	}
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(CQE{}))
	size := max(sqSize, cqSize)
	mem, err := unix.Mmap(u.fd, ioringOffSQRing, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap rings: %v", ErrUnavailable, err)
	}
	u.ringMem = mem
	sqeSize := int(p.sqEntries) * int(unsafe.Sizeof(SQE{}))
	sqeMem, err := unix.Mmap(u.fd, ioringOffSQEs, sqeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("%w: mmap SQEs: %v", ErrUnavailable, err)
	}
	u.sqeMem = sqeMem
	u.sqHead = (*uint32)(unsafe.Pointer(&mem[p.sqOff.head]))
	u.sqTail = (*uint32)(unsafe.Pointer(&mem[p.sqOff.tail]))
	u.sqMask = *(*uint32)(unsafe.Pointer(&mem[p.sqOff.ringMask]))
	u.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&mem[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i) // SQE i sits in slot i, always
	}
	u.sqLocal = atomic.LoadUint32(u.sqTail)
	u.cqHead = (*uint32)(unsafe.Pointer(&mem[p.cqOff.head]))
	u.cqTail = (*uint32)(unsafe.Pointer(&mem[p.cqOff.tail]))
	u.cqMask = *(*uint32)(unsafe.Pointer(&mem[p.cqOff.ringMask]))
	u.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&mem[p.cqOff.cqes])), p.cqEntries)

	// The provided buffers and their ring live outside the Go heap: the kernel writes into
	// them whenever a datagram arrives.
	if u.bufRing, err = unix.Mmap(-1, 0, Bufs*16, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("relay: io_uring buffer ring: %w", err)
	}
	if u.bufMem, err = unix.Mmap(-1, 0, Bufs*u.stride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("relay: io_uring buffers: %w", err)
	}
	reg := ioBufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&u.bufRing[0]))), ringEntries: Bufs, bgid: bufGroup}
	if _, _, e := unix.RawSyscall6(unix.SYS_IO_URING_REGISTER, uintptr(u.fd), ioringRegisterPbufRng,
		uintptr(unsafe.Pointer(&reg)), 1, 0, 0); e != 0 {
		return nil, fmt.Errorf("%w: register provided buffer ring: %v", ErrUnavailable, e)
	}
	for bid := 0; bid < Bufs; bid++ {
		u.PutBuf(uint16(bid))
	}
	u.PublishBufs()
	u.recvMsg.Namelen = unix.SizeofSockaddrInet6
	for i := range u.sendMsgs {
		u.sendMsgs[i].Name = u.sendTo[i].Ptr()
		u.sendMsgs[i].Iov = &u.sendIovs[i]
		u.sendMsgs[i].Iovlen = 1
	}
	ok = true
	return u, nil
}

func (u *Ring) Close() {
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

// Buf returns buffer bid.
func (u *Ring) Buf(bid uint16) []byte {
	off := int(bid) * u.stride
	return u.bufMem[off : off+u.stride : off+u.stride]
}

// PutBuf hands buffer bid back to the kernel (visible after PublishBufs).
func (u *Ring) PutBuf(bid uint16) {
	e := unsafe.Slice((*uint64)(unsafe.Pointer(&u.bufRing[int(u.bufTail&(Bufs-1))*16])), 2)
	e[0] = uint64(uintptr(unsafe.Pointer(&u.Buf(bid)[0])))
	// len (4 bytes) and bid (2 bytes); the last 2 bytes of entry 0 are the ring's tail.
	l := (*uint32)(unsafe.Pointer(&e[1]))
	*l = u.bufLen
	*(*uint16)(unsafe.Add(unsafe.Pointer(l), 4)) = bid
	u.bufTail++
}

// PublishBufs makes the buffers put since the last call visible to the kernel: a release
// store of the ring's 16-bit tail, done as a 32-bit atomic store of the word that holds it
// together with entry 0's bid (which only this thread writes).
func (u *Ring) PublishBufs() {
	w := (*uint32)(unsafe.Pointer(&u.bufRing[12]))
	bid0 := uint32(*(*uint16)(unsafe.Pointer(&u.bufRing[12])))
	atomic.StoreUint32(w, bid0|uint32(u.bufTail)<<16)
}

// SQE returns the next free SQE, zeroed, or nil if the submission queue is full.
func (u *Ring) SQE() *SQE {
	if u.sqLocal-atomic.LoadUint32(u.sqHead) >= uint32(len(u.sqes)) {
		return nil
	}
	s := &u.sqes[u.sqLocal&u.sqMask]
	*s = SQE{}
	u.sqLocal++
	return s
}

// Pending is how many prepared SQEs the kernel has not consumed.
func (u *Ring) Pending() uint32 {
	atomic.StoreUint32(u.sqTail, u.sqLocal)
	return u.sqLocal - atomic.LoadUint32(u.sqHead)
}

// Reap calls f for every completion that is ready, in order, and then hands their slots
// back to the kernel; it returns how many there were. Completions that arrive while f runs
// (f may submit, and so make the kernel post more) wait for the next Reap.
func (u *Ring) Reap(f func(CQE)) int {
	head := *u.cqHead // only this thread writes it
	tail := atomic.LoadUint32(u.cqTail)
	for h := head; h != tail; h++ {
		f(u.cqes[h&u.cqMask])
	}
	atomic.StoreUint32(u.cqHead, tail)
	return int(tail - head)
}

// Ready reports whether completions are waiting to be reaped.
func (u *Ring) Ready() bool { return atomic.LoadUint32(u.cqTail) != *u.cqHead }

// MoveBufTail moves the provided buffers' tail by delta entries without writing them: -Bufs
// withdraws every buffer from the kernel and Bufs gives them back (visible after PublishBufs).
// Tests use it to run the kernel out of buffers.
func (u *Ring) MoveBufTail(delta int) { u.bufTail += uint16(delta) }

// Enter submits what is pending and, if min > 0, waits until at least min completions are
// ready: raw (the thread keeps its P; a signal ends the wait with EINTR) or through the
// runtime's syscall path (the P goes to other goroutines meanwhile). ms > 0 bounds the wait.
func (u *Ring) Enter(min uint32, raw bool, ms int) unix.Errno {
	toSubmit := u.Pending()
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

// PrepRecv arms a multishot recvmsg on fd into the provided buffers.
func (u *Ring) PrepRecv(s *SQE, fd int, userData uint64) {
	s.opcode = ioringOpRecvmsg
	s.flags = iosqeBufferSelect
	s.ioprio = ioringRecvMultishot
	s.fd = int32(fd)
	s.addr = uint64(uintptr(unsafe.Pointer(&u.recvMsg)))
	s.bufGroup = bufGroup
	s.UserData = userData
}

// PrepPoll arms a multishot poll for readability of fd.
func (u *Ring) PrepPoll(s *SQE, fd int, userData uint64) {
	s.opcode = ioringOpPollAdd
	s.fd = int32(fd)
	s.len = ioringPollAddMulti
	s.opFlags = unix.POLLIN
	s.UserData = userData
}

// PrepCancelFD cancels every request on fd (or, with fd < 0, every request).
func (u *Ring) PrepCancelFD(s *SQE, fd int, userData uint64) {
	s.opcode = ioringOpAsyncCancel
	s.fd = int32(fd)
	s.opFlags = ioringAsyncCancelAll | ioringAsyncCancelFD
	if fd < 0 {
		s.opFlags = ioringAsyncCancelAny | ioringAsyncCancelAll
	}
	s.UserData = userData
}

// PrepCancel cancels the request prepared with user_data target. The kernel finds it in its
// hash of armed requests by that value, where PrepCancelFD with an fd walks every armed
// request of the ring: O(1) against O(requests) per cancel, with one multishot receive armed
// per relay socket (measured: with 10 000 allocations the fd walk, io_cancel_req_match, was
// ~5 % of the server's CPU while they were being released).
func (u *Ring) PrepCancel(s *SQE, target, userData uint64) {
	s.opcode = ioringOpAsyncCancel
	s.fd = -1
	s.addr = target
	s.UserData = userData
}

// PrepSend sends b (which lies in buffer bid) to to through fd. The address is copied: the
// fast-path entry it came from may go before the send completes.
func (u *Ring) PrepSend(s *SQE, fd int, bid uint16, b []byte, to *sock.RawAddr, userData uint64) {
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
	s.UserData = userData
}

var (
	uringProbeOnce sync.Once
	uringProbeErr  error
)

// Usable reports whether this kernel runs the io_uring loop: it sets up a ring the way
// a worker does and relays one datagram over loopback through a multishot recvmsg and a
// sendmsg. The answer is cached.
func Usable() error {
	uringProbeOnce.Do(func() { uringProbeErr = probe() })
	return uringProbeErr
}

// probePayload is the buffer size the probe's ring is made with (any size will do).
const probePayload = 2048

func probe() error {
	// The ring's only submitter is the thread that made it (SINGLE_ISSUER).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	u, err := New(probePayload)
	if err != nil {
		return err
	}
	defer u.Close()
	fail := func(what string, e error) error { return fmt.Errorf("%w: probe: %s: %v", ErrUnavailable, what, e) }
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
	u.PrepRecv(u.SQE(), fds[1], 1)
	if e := u.Enter(0, true, 0); e != 0 {
		return fail("submit recvmsg", e)
	}
	if err := unix.Sendto(fds[0], []byte("avedge"), 0, sa); err != nil {
		return fail("send", err)
	}
	// The datagram is already queued on the socket: one bounded wait completes it.
	if e := u.Enter(1, true, 1000); e != 0 {
		return fail("wait", e)
	}
	var c CQE
	if u.Reap(func(cq CQE) { c = cq }) == 0 {
		return fail("wait", errors.New("no completion within 1s"))
	}
	if c.Res < 0 {
		return fail("multishot recvmsg", unix.Errno(-c.Res))
	}
	bid, ok := c.Buffer()
	if !ok || !c.More() {
		return fail("multishot recvmsg", fmt.Errorf("completion flags %#x", c.Flags))
	}
	b := u.Buf(bid)
	if n, _ := Recvmsg(b); n != 6 || string(b[PayloadOff:PayloadOff+6]) != "avedge" {
		return fail("multishot recvmsg", fmt.Errorf("payload %d bytes", n))
	}
	return nil
}
