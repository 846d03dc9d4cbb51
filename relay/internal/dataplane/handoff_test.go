//go:build linux

package dataplane

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

// A relay socket's queue (no priority lane) is read in a plain channel receive; Close must
// end it whether the reader is blocked, the queue holds datagrams, or the queue is full.
func TestPopWithoutLaneEndsOnClose(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:5000")
	buf := make([]byte, bufSize)

	t.Run("blocked reader", func(t *testing.T) {
		h := NewHandoffQueue(4)
		errc := make(chan error, 1)
		go func() {
			_, _, err := h.Pop(buf)
			errc <- err
		}()
		if !h.Close() {
			t.Fatal("first Close reported false")
		}
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Pop after Close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("datagrams before close", func(t *testing.T) {
		h := NewHandoffQueue(4)
		if !h.Push([]byte("abc"), from) {
			t.Fatal("Push refused")
		}
		n, got, err := h.Pop(buf)
		if err != nil || string(buf[:n]) != "abc" || got != from {
			t.Fatalf("Pop = %q %v %v, want abc %v nil", buf[:n], got, err, from)
		}
	})
	t.Run("full queue", func(t *testing.T) {
		h := NewHandoffQueue(2)
		for h.Push([]byte("x"), from) {
		}
		h.Close()
		for range 2 {
			if _, _, err := h.Pop(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Pop after Close of a full queue: %v, want net.ErrClosed", err)
			}
		}
	})
	t.Run("close twice", func(t *testing.T) {
		h := NewHandoffQueue(1)
		h.Close()
		if h.Close() {
			t.Fatal("second Close reported true")
		}
		if _, _, err := h.Pop(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Pop: %v, want net.ErrClosed", err)
		}
	})
}

// A relay socket's queue keeps its datagrams in order as its ring grows and wraps, holds up
// to its bound and refuses the next, and takes again once the reader made room.
func TestRingQueueOrderAndBound(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:5000")
	buf := make([]byte, bufSize)
	const bound = 100
	h := NewHandoffQueue(bound)
	next, want := 0, 0 // datagrams are numbered in the order pushed
	push := func() bool {
		if !h.Push([]byte{byte(next), byte(next >> 8)}, from) {
			return false
		}
		next++
		return true
	}
	pop := func() {
		t.Helper()
		n, got, err := h.Pop(buf)
		if err != nil || n != 2 || int(buf[0])|int(buf[1])<<8 != want || got != from {
			t.Fatalf("Pop = % x %v %v, want datagram %d from %v", buf[:n], got, err, want, from)
		}
		want++
	}
	// Wrap the ring at its first size, then grow it while it wraps.
	for range 5 {
		push()
	}
	for range 4 {
		pop()
	}
	for push() {
	}
	if h.Len() != bound || next-want != bound {
		t.Fatalf("a full queue holds %d (Len %d), want %d", next-want, h.Len(), bound)
	}
	pop()
	if !push() {
		t.Fatal("Push refused after the reader made room")
	}
	if push() {
		t.Fatal("Push beyond the bound accepted")
	}
	for h.Len() > 0 {
		pop()
	}
	if want != next {
		t.Fatalf("popped %d of %d", want, next)
	}
	// A blocked reader wakes for the next datagram.
	got := make(chan int, 1)
	go func() {
		b := make([]byte, bufSize)
		n, _, err := h.Pop(b)
		if err != nil || n != 2 {
			got <- -1
			return
		}
		got <- int(b[0]) | int(b[1])<<8
	}()
	push()
	if d := <-got; d != want {
		t.Fatalf("blocked reader got datagram %d, want %d", d, want)
	}
}

// Wait returns once a datagram waits, without taking it, and net.ErrClosed after Close.
func TestWaitWithoutLane(t *testing.T) {
	from := netip.MustParseAddrPort("192.0.2.1:5000")
	buf := make([]byte, bufSize)
	h := NewHandoffQueue(4)
	errc := make(chan error, 1)
	go func() { errc <- h.Wait() }()
	if !h.Push([]byte("abc"), from) {
		t.Fatal("Push refused")
	}
	if err := <-errc; err != nil {
		t.Fatalf("Wait with a datagram waiting: %v", err)
	}
	if err := h.Wait(); err != nil { // still there: Wait took nothing
		t.Fatalf("second Wait: %v", err)
	}
	if n, got, err := h.Pop(buf); err != nil || string(buf[:n]) != "abc" || got != from {
		t.Fatalf("Pop after Wait = %q %v %v, want abc %v nil", buf[:n], got, err, from)
	}
	go func() { errc <- h.Wait() }()
	h.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait after Close: %v, want net.ErrClosed", err)
	}
}
