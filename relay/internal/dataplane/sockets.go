//go:build linux

package dataplane

import (
	"sync/atomic"
	"time"

	"github.com/avedge/avedge/relay/policy"
)

// Listener is one UDP listen address as the workers see it: every worker has a
// SO_REUSEPORT socket on it (Worker.AddListener), and STUN messages that arrive there are
// handed to the control plane through its queue.
type Listener struct {
	ID uint16 // index of the listen address, the same in every worker. Static.
	HandoffQueue
}

// NewListener returns listen address id with a hand-off queue of n datagrams.
func NewListener(id uint16, n int) *Listener {
	return &Listener{ID: id, HandoffQueue: NewHandoffQueue(n)}
}

// Relay is one allocation's relay socket as the workers see it. One worker reads it
// (Worker.AddRelay); peer packets that are not on a bound channel are handed to the control
// plane through its queue.
type Relay struct {
	FD     int                   // Static after construction.
	Alloc  atomic.Pointer[Alloc] // set when the control plane reports the allocation created
	bucket bandwidth             // per-allocation cap; zero: unlimited. Static after construction.
	HandoffQueue
}

// NewRelay returns relay socket fd with a hand-off queue of n datagrams and a bandwidth cap
// of bytesPerSecond (0: unlimited).
func NewRelay(fd int, n int, bytesPerSecond int64) *Relay {
	r := &Relay{FD: fd, HandoffQueue: NewHandoffQueue(n)}
	r.bucket.init(bytesPerSecond)
	return r
}

// Limited reports whether n more bytes exceed the allocation's bandwidth cap (and, if not,
// takes them from it).
func (r *Relay) Limited(n int) bool { return r.bucket.over(n) }

// bandwidth is an allocation's byte-rate cap. The zero value is unlimited and costs one nil
// check per packet.
type bandwidth struct{ b *policy.Bucket }

func (b *bandwidth) init(bytesPerSecond int64) {
	if bytesPerSecond > 0 {
		b.b = policy.NewBucket(bytesPerSecond, bytesPerSecond)
	}
}

func (b *bandwidth) over(n int) bool {
	return b.b != nil && !b.b.Take(n, time.Now().UnixNano())
}

type sockKind uint8

const (
	kindWake sockKind = iota
	kindListener
	kindRelay
)

// loopSock is a socket a worker reads. Static after construction but for the io_uring
// loop's fields.
type loopSock struct {
	fd   int
	kind sockKind
	lis  *Listener // kindListener
	rc   *Relay    // kindRelay

	// io_uring loop only. Owned by the loop.
	armed   bool          // its multishot request is live
	closing chan struct{} // CloseRelay waits on it: closed once the request ended and fd is closed
}
