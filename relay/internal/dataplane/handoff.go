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
//
// A queue may have a second, priority lane (NewPriorityQueue): what is pushed there
// (PushLive) is read before anything waiting in the ordinary one. The listeners' queues use
// it so that the requests of clients with a live allocation (Refresh, CreatePermission,
// ChannelBind) never wait behind a flood of new work.
//
// A queue without a priority lane (NewHandoffQueue: a relay socket's) is a ring that grows
// as datagrams wait, up to its bound, instead of a channel: every allocation has one, most
// never hold more than a few datagrams (ICE checks before the ChannelBind), but one whose
// peer traffic all goes through pion (a TCP client's, or Data indications) needs room for as
// many as arrive while pion's reader waits for the CPU on a loaded machine. A channel that
// deep would cost every idle allocation its full size; the ring costs it nothing until used.
type HandoffQueue struct {
	q    chan *slowPkt // the ordinary lane of a queue with a priority lane
	live chan *slowPkt // the priority lane; nil: none (the queue is a ring)

	mu    sync.Mutex
	ring  []*slowPkt    // a queue without a priority lane: len(ring) is 0 or a power of 2. Guarded by mu.
	head  int           // index in ring of the oldest datagram. Guarded by mu.
	n     int           // datagrams in ring. Guarded by mu.
	shut  bool          // Close was called. Guarded by mu.
	max   int           // the ring's bound. Static after construction.
	ready chan struct{} // signalled (capacity 1) when the ring gets a datagram or is closed

	stash  *slowPkt // taken from q, waiting for a gate token (PopGated). Owned by the reader.
	closed chan struct{}
	once   sync.Once
	// sending is held (read) by the facade's writes while they use the socket, and (write) by
	// Close, so that a socket is never written after it was closed and its number reused.
	sending sync.RWMutex
}

// NewHandoffQueue returns a queue of up to n datagrams without a priority lane; it takes
// memory for them only as they wait.
func NewHandoffQueue(n int) HandoffQueue {
	return HandoffQueue{max: max(n, 1), ready: make(chan struct{}, 1), closed: make(chan struct{})}
}

// NewPriorityQueue returns a queue of n datagrams with a priority lane of live more.
func NewPriorityQueue(n, live int) HandoffQueue {
	return HandoffQueue{q: make(chan *slowPkt, n), live: make(chan *slowPkt, live), closed: make(chan struct{})}
}

// Push copies d for the reader; false when the reader is behind (the datagram is dropped)
// or gone.
func (h *HandoffQueue) Push(d []byte, from netip.AddrPort) bool {
	if h.ready != nil {
		return h.pushRing(d, from)
	}
	return push(h.q, d, from)
}

// pushRing is Push for a queue without a priority lane.
func (h *HandoffQueue) pushRing(d []byte, from netip.AddrPort) bool {
	h.mu.Lock()
	if h.shut || h.n == h.max {
		h.mu.Unlock()
		return false
	}
	if h.n == len(h.ring) {
		grown := make([]*slowPkt, max(8, 2*len(h.ring)))
		for i := 0; i < h.n; i++ {
			grown[i] = h.ring[(h.head+i)&(len(h.ring)-1)]
		}
		h.ring, h.head = grown, 0
	}
	p := slowPool.Get().(*slowPkt)
	p.n = copy(p.buf[:], d)
	p.from = from
	h.ring[(h.head+h.n)&(len(h.ring)-1)] = p
	h.n++
	h.mu.Unlock()
	select {
	case h.ready <- struct{}{}:
	default: // the reader has a wake-up pending already
	}
	return true
}

// popRing takes the oldest datagram of a queue without a priority lane; nil if there is
// none. It reports whether the queue was closed (then it takes nothing).
func (h *HandoffQueue) popRing() (*slowPkt, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shut {
		return nil, true
	}
	if h.n == 0 {
		return nil, false
	}
	p := h.ring[h.head]
	h.ring[h.head] = nil
	h.head = (h.head + 1) & (len(h.ring) - 1)
	h.n--
	return p, false
}

// PushLive is Push onto the priority lane (Push if the queue has none).
func (h *HandoffQueue) PushLive(d []byte, from netip.AddrPort) bool {
	if h.live == nil {
		return h.Push(d, from)
	}
	return push(h.live, d, from)
}

func push(q chan *slowPkt, d []byte, from netip.AddrPort) bool {
	p := slowPool.Get().(*slowPkt)
	p.n = copy(p.buf[:], d)
	p.from = from
	select {
	case q <- p:
		return true
	default:
		slowPool.Put(p)
		return false
	}
}

// Len is the number of datagrams waiting, in both lanes.
func (h *HandoffQueue) Len() int {
	if h.ready != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.n
	}
	return len(h.q) + len(h.live)
}

// Pop waits for the next datagram, from the priority lane first, and copies it into b; after
// Close it returns net.ErrClosed.
//
// A queue without a priority lane (a relay socket's: every allocation has a pion goroutine
// blocked here) waits in a plain channel receive on h.ready, which Close signals too: a
// select over the queue and h.closed would take the runtime's select, whose frame pushes the
// idle reader's stack (pion's handler, ReadFrom, this) past the 2 kB a goroutine starts with,
// and every idle allocation would hold a 4 kB stack instead.
func (h *HandoffQueue) Pop(b []byte) (int, netip.AddrPort, error) {
	if h.live != nil {
		n, from, _, err := h.PopLane(b)
		return n, from, err
	}
	var p *slowPkt
	for {
		var shut bool
		if p, shut = h.popRing(); shut {
			return 0, netip.AddrPort{}, net.ErrClosed
		}
		if p != nil {
			break
		}
		<-h.ready
	}
	n := copy(b, p.buf[:p.n])
	from := p.from
	slowPool.Put(p)
	return n, from, nil
}

// Wait returns once a Pop may find a datagram without waiting, or net.ErrClosed after Close,
// without taking the datagram: a reader can then hold its read buffer only while a datagram is
// there (pion's allocation reader does, through relayConn.WaitRead). On a queue with a priority
// lane it returns at once; Pop then waits.
func (h *HandoffQueue) Wait() error {
	if h.ready == nil {
		return nil
	}
	for {
		h.mu.Lock()
		shut, n := h.shut, h.n
		h.mu.Unlock()
		if shut {
			return net.ErrClosed
		}
		if n > 0 {
			return nil
		}
		<-h.ready
	}
}

// PopLane is Pop, and tells whether the datagram came from the priority lane.
func (h *HandoffQueue) PopLane(b []byte) (n int, from netip.AddrPort, live bool, err error) {
	var p *slowPkt
	select {
	case p = <-h.live: // a nil lane is never ready
		live = true
	default:
		select {
		case p = <-h.live:
			live = true
		case p = <-h.q:
		case <-h.closed:
			return 0, netip.AddrPort{}, false, net.ErrClosed
		}
	}
	n = copy(b, p.buf[:p.n])
	from = p.from
	slowPool.Put(p)
	return n, from, live, nil
}

// PopGated is PopLane for a reader that may handle a datagram of the ordinary lane only with
// a token of gate (a send on it; the caller gives it back, <-gate, once it has handled the
// datagram). While it waits for a token it keeps watching the priority lane, and what comes
// there is returned first, without a token: a wait for a token never holds up a live
// allocation's request. took reports whether a token was taken.
func (h *HandoffQueue) PopGated(b []byte, gate chan struct{}) (n int, from netip.AddrPort, took bool, err error) {
	var p *slowPkt
	if h.stash == nil {
		select {
		case p = <-h.live:
		default:
			select {
			case p = <-h.live:
			case h.stash = <-h.q:
			case <-h.closed:
				return 0, netip.AddrPort{}, false, net.ErrClosed
			}
		}
	}
	if p == nil {
		select {
		case p = <-h.live:
		default:
			select {
			case p = <-h.live:
			case gate <- struct{}{}:
				p, h.stash, took = h.stash, nil, true
			case <-h.closed:
				return 0, netip.AddrPort{}, false, net.ErrClosed
			}
		}
	}
	n = copy(b, p.buf[:p.n])
	from = p.from
	slowPool.Put(p)
	return n, from, took, nil
}

// Close ends Pop and BeginSend; it waits for writes in progress. It reports whether this was
// the first call.
func (h *HandoffQueue) Close() bool {
	h.sending.Lock()
	defer h.sending.Unlock()
	first := false
	h.once.Do(func() {
		close(h.closed)
		first = true
		// Wakes a reader blocked in Pop's plain receive (queues without a priority lane; the
		// others wait in a select that watches h.closed). The datagrams still waiting go back
		// to the pool: Pop returns net.ErrClosed from now on.
		if h.ready != nil {
			h.mu.Lock()
			h.shut = true
			for ; h.n > 0; h.n-- {
				slowPool.Put(h.ring[h.head])
				h.ring[h.head] = nil
				h.head = (h.head + 1) & (len(h.ring) - 1)
			}
			h.mu.Unlock()
			select {
			case h.ready <- struct{}{}:
			default:
			}
		}
	})
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
