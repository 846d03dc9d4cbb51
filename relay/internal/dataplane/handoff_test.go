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
