//go:build linux

package dataplane

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/policy"
)

// Listener is one UDP listen address as the workers see it: every worker has a
// SO_REUSEPORT socket on it (Worker.AddListener). STUN messages that arrive there are handed
// to the control plane through the queue of one of its shards, chosen by the client's address
// (Shard): each shard is read by its own pion read loop and allocation manager, so a busy
// shard stalls no other, and a client's requests always reach the same one.
type Listener struct {
	ID     uint16          // index of the listen address, the same in every worker. Static.
	Shards []*HandoffQueue // Static. Each has a priority lane for clients with an allocation.
}

// NewListener returns listen address id with shards shards (at least one), each with a
// hand-off queue of n datagrams and a priority lane of as many.
func NewListener(id uint16, shards, n int) *Listener {
	l := &Listener{ID: id, Shards: make([]*HandoffQueue, max(shards, 1))}
	for i := range l.Shards {
		l.Shards[i] = &HandoffQueue{}
		*l.Shards[i] = NewPriorityQueue(n, n)
	}
	return l
}

// Shard returns the queue of the shard that handles client from. The choice depends on the
// client's IP address alone, so it is the same in every worker and for the allocation's
// whole life, and all the ports of one address share a shard: pion keeps EVEN-PORT
// reservations per allocation manager, and the RTCP socket that redeems a RESERVATION-TOKEN
// is another port of the RTP socket's address.
func (l *Listener) Shard(from netip.AddrPort) *HandoffQueue {
	if len(l.Shards) == 1 {
		return l.Shards[0]
	}
	return l.Shards[shardHash(from.Addr())%uint32(len(l.Shards))]
}

// shardHash mixes a client address (FNV-1a over its 16 bytes, then murmur3's finaliser,
// since FNV's low bits alone are poorly mixed): cheap, allocation free, and stable across
// workers and restarts.
func shardHash(ip netip.Addr) uint32 {
	a := ip.Unmap().As16()
	h := uint32(2166136261)
	for _, c := range a {
		h = (h ^ uint32(c)) * 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// Relay is one allocation's relay socket as the workers see it. One worker reads it
// (Worker.AddRelay); peer packets that are not on a bound channel are handed to the control
// plane through its queue.
type Relay struct {
	FD      int                   // Static after construction.
	Alloc   atomic.Pointer[Alloc] // set when the control plane reports the allocation created
	bucket  bandwidth             // per-allocation cap; zero: unlimited. Static after construction.
	Traffic Traffic               // what the allocation relayed. Written by the workers and the facades; read by the admin API.
	HandoffQueue
}

// Traffic counts one allocation's relayed packets and bytes (payload, as the metrics count
// them) in each direction, whichever path carried them. Atomics: written by the worker that
// forwards a packet and by the control plane's facades, read at any time.
type Traffic struct {
	packets, bytes [metrics.NumDirections]atomic.Uint64
}

// Count counts one packet of n bytes in direction d.
func (t *Traffic) Count(d metrics.Direction, n int) {
	t.packets[d].Add(1)
	t.bytes[d].Add(uint64(n))
}

// Load returns the packets and bytes counted in direction d.
func (t *Traffic) Load(d metrics.Direction) (packets, bytes uint64) {
	return t.packets[d].Load(), t.bytes[d].Load()
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
