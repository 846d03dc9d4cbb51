//go:build linux

package uring

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// A multishot recvmsg armed once delivers every datagram queued on the socket, each in a
// provided buffer with its length and source, and Reap hands them over in order, once each.
func TestReapDeliversEachDatagramOnce(t *testing.T) {
	if err := Usable(); err != nil {
		t.Skipf("this kernel does not run io_uring: %v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	u, err := New(2048)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var fds [2]int
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	sa, err := unix.Getsockname(fds[1])
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		if err := unix.Sendto(fds[0], []byte(fmt.Sprintf("datagram %d", i)), 0, sa); err != nil {
			t.Fatal(err)
		}
	}
	u.PrepRecv(u.SQE(), fds[1], 42)
	var got []string
	for tries := 0; len(got) < n && tries < 10; tries++ {
		if e := u.Enter(1, false, 1000); e != 0 && e != unix.ETIME && e != unix.EINTR {
			t.Fatalf("Enter: %v", e)
		}
		u.Reap(func(c CQE) {
			bid, ok := c.Buffer()
			if c.UserData != 42 || c.Res < 0 || !ok || !c.More() {
				t.Fatalf("completion %+v: want a buffer of request 42, still armed", c)
			}
			b := u.Buf(bid)
			size, trunc := Recvmsg(b)
			if trunc {
				t.Fatalf("datagram %d truncated", len(got))
			}
			got = append(got, string(b[PayloadOff:PayloadOff+size]))
			u.PutBuf(bid)
		})
		u.PublishBufs()
	}
	for i := range n {
		if want := fmt.Sprintf("datagram %d", i); i >= len(got) || got[i] != want {
			t.Fatalf("got %q, want datagram 0..%d in order", got, n-1)
		}
	}
	if u.Ready() || u.Reap(func(CQE) { t.Fatal("a completion reaped twice") }) != 0 {
		t.Fatal("completions left after every datagram was reaped")
	}
}

// PrepCancel ends the multishot receive it names, by its user_data, and no other: the
// request on the other socket still delivers a datagram afterwards.
func TestPrepCancelEndsOnlyTheNamedRequest(t *testing.T) {
	if err := Usable(); err != nil {
		t.Skipf("this kernel does not run io_uring: %v", err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	u, err := New(2048)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var fds [3]int // fds[0] sends to the two receivers
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	u.PrepRecv(u.SQE(), fds[1], 1)
	u.PrepRecv(u.SQE(), fds[2], 2)
	u.PrepCancel(u.SQE(), 1, 99)
	ended, cancelRes := false, int32(1)
	for tries := 0; (!ended || cancelRes == 1) && tries < 10; tries++ {
		if e := u.Enter(1, false, 1000); e != 0 && e != unix.ETIME && e != unix.EINTR {
			t.Fatalf("Enter: %v", e)
		}
		u.Reap(func(c CQE) {
			switch {
			case c.UserData == 1 && !c.More():
				ended = true
			case c.UserData == 99:
				cancelRes = c.Res
			default:
				t.Fatalf("unexpected completion %+v", c)
			}
		})
	}
	if !ended || cancelRes != 0 {
		t.Fatalf("request 1 ended %v, cancel result %d: want ended, 0", ended, cancelRes)
	}
	sa, err := unix.Getsockname(fds[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(fds[0], []byte("still armed"), 0, sa); err != nil {
		t.Fatal(err)
	}
	got := false
	for tries := 0; !got && tries < 10; tries++ {
		if e := u.Enter(1, false, 1000); e != 0 && e != unix.ETIME && e != unix.EINTR {
			t.Fatalf("Enter: %v", e)
		}
		u.Reap(func(c CQE) {
			bid, ok := c.Buffer()
			if c.UserData != 2 || !ok || !c.More() {
				t.Fatalf("completion %+v: want a datagram of request 2, still armed", c)
			}
			u.PutBuf(bid)
			u.PublishBufs()
			got = true
		})
	}
	if !got {
		t.Fatal("request 2 delivered nothing after request 1 was cancelled")
	}
}
