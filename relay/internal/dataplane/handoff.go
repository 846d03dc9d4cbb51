//go:build linux

package dataplane

import (
	"net"
	"net/netip"
	"sync"
)

// slowPkt carries a datagram from a worker to the control plane. Pooled: the slow path is not
// free of allocations (pion's own handling allocates), but the hand-off itself reuses its
// buffers.
type slowPkt struct {
	n    int
	from netip.AddrPort
	buf  [bufSize]byte
}

var slowPool = sync.Pool{New: func() any { return new(slowPkt) }}

// HandoffQueue is the bounded queue between the workers and one reader of the control plane
// (pion, through a net.PacketConn facade), and the guard of the facade's writes to the socket.
type HandoffQueue struct {
	q      chan *slowPkt
	closed chan struct{}
	once   sync.Once
	// sending is held (read) by the facade's writes while they use the socket, and (write) by
	// Close, so that a socket is never written after it was closed and its number reused.
	sending sync.RWMutex
}

// NewHandoffQueue returns a queue of n datagrams.
func NewHandoffQueue(n int) HandoffQueue {
	return HandoffQueue{q: make(chan *slowPkt, n), closed: make(chan struct{})}
}

// Push copies d for the reader; false when the reader is behind (the datagram is dropped)
// or gone.
func (h *HandoffQueue) Push(d []byte, from netip.AddrPort) bool {
	p := slowPool.Get().(*slowPkt)
	p.n = copy(p.buf[:], d)
	p.from = from
	select {
	case h.q <- p:
		return true
	default:
		slowPool.Put(p)
		return false
	}
}

// Pop waits for the next datagram and copies it into b; after Close it returns net.ErrClosed.
func (h *HandoffQueue) Pop(b []byte) (int, netip.AddrPort, error) {
	select {
	case p := <-h.q:
		n := copy(b, p.buf[:p.n])
		from := p.from
		slowPool.Put(p)
		return n, from, nil
	case <-h.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

// Close ends Pop and BeginSend; it waits for writes in progress. It reports whether this was
// the first call.
func (h *HandoffQueue) Close() bool {
	h.sending.Lock()
	defer h.sending.Unlock()
	first := false
	h.once.Do(func() { close(h.closed); first = true })
	return first
}

// BeginSend reports whether the socket may still be written; EndSend must follow a true.
func (h *HandoffQueue) BeginSend() bool {
	h.sending.RLock()
	select {
	case <-h.closed:
		h.sending.RUnlock()
		return false
	default:
		return true
	}
}

// EndSend ends what BeginSend began.
func (h *HandoffQueue) EndSend() { h.sending.RUnlock() }
