//go:build linux

package dataplane

import (
	"sync/atomic"

	"github.com/avedge/avedge/metrics"
)

// DropReason is why a packet was not relayed. Its string is the metric label.
type DropReason uint8

// Drop reasons.
const (
	DropNoAllocation DropReason = iota // ChannelData from a client with no allocation here
	DropNoChannel                      // ChannelData on a channel number that is not bound
	DropNoPermission                   // peer packet, or channel whose permission expired
	DropMalformed                      // neither STUN nor a well-formed ChannelData
	DropTooLarge                       // truncated: larger than our buffers
	DropQueueFull                      // the control plane could not keep up with its share
	DropSendError                      // the kernel refused the send (buffer full, unreachable)
	DropPolicy                         // peer refused by the peer policy
	DropQuota                          // bandwidth cap
	DropRateLimited                    // Allocate request, 401 answer, Binding answer or STUN request of a client without allocation over its per-source rate
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	metrics.DropNoAllocation, metrics.DropNoChannel, metrics.DropNoPermission, metrics.DropMalformed,
	metrics.DropTooLarge, metrics.DropQueueFull, metrics.DropSendError, metrics.DropPolicy, metrics.DropQuota,
	metrics.DropRateLimited,
}

// String returns the reason's metric label.
func (r DropReason) String() string { return dropReasonNames[r] }

// Stats are the counters of one worker: written by its loop only (atomics so that a scrape may
// read them at any time), summed into a metrics.Snapshot by AddTo.
type Stats struct {
	traffic [metrics.NumDirections][metrics.NumPaths]struct {
		packets atomic.Uint64
		bytes   atomic.Uint64
		_       [48]byte // keep directions on their own cache lines
	}
	drops          [numDropReasons]atomic.Uint64
	binding        atomic.Uint64
	bindingAnswers atomic.Uint64 // Binding requests the worker answered itself (binding.go)
	challenges     atomic.Uint64 // 401 challenges the worker answered itself (Config.Challenge)
}

func (s *Stats) count(d metrics.Direction, p metrics.Path, n int) {
	t := &s.traffic[d][p]
	t.packets.Add(1)
	t.bytes.Add(uint64(n))
}

// Packets is how many packets went in direction d on path p.
func (s *Stats) Packets(d metrics.Direction, p metrics.Path) uint64 {
	return s.traffic[d][p].packets.Load()
}

// Drops is how many packets were dropped for r.
func (s *Stats) Drops(r DropReason) uint64 { return s.drops[r].Load() }

// BindingAnswers is how many Binding requests the worker answered itself.
func (s *Stats) BindingAnswers() uint64 { return s.bindingAnswers.Load() }

// Challenges is the number of 401 challenges the worker answered itself (Config.Challenge).
func (s *Stats) Challenges() uint64 { return s.challenges.Load() }

// AddTo adds the counters to sn's Traffic, Drops and BindingRequests.
func (s *Stats) AddTo(sn *metrics.Snapshot) {
	for d := range s.traffic {
		for p := range s.traffic[d] {
			t := &s.traffic[d][p]
			sn.Traffic[d][p].Packets += t.packets.Load()
			sn.Traffic[d][p].Bytes += t.bytes.Load()
		}
	}
	addDrops(sn, &s.drops)
	sn.BindingRequests += s.binding.Load()
}

func addDrops(sn *metrics.Snapshot, drops *[numDropReasons]atomic.Uint64) {
	for r := DropReason(0); r < numDropReasons; r++ {
		if v := drops[r].Load(); v > 0 {
			sn.Drops[r.String()] += v
		}
	}
}

// SlowStats count what the control plane relays and drops (indications, stream clients,
// rate limits). Event rate is packet rate on those paths, so these are atomics shared by its
// goroutines.
type SlowStats struct {
	traffic [metrics.NumDirections][metrics.NumPaths]struct{ packets, bytes atomic.Uint64 }
	drops   [numDropReasons]atomic.Uint64
}

// Count counts one packet of n bytes in direction d on path p.
func (s *SlowStats) Count(d metrics.Direction, p metrics.Path, n int) {
	s.traffic[d][p].packets.Add(1)
	s.traffic[d][p].bytes.Add(uint64(n))
}

// AddBytes counts n bytes in direction d on path p and no packet (a byte stream's path).
func (s *SlowStats) AddBytes(d metrics.Direction, p metrics.Path, n int64) {
	s.traffic[d][p].bytes.Add(uint64(n))
}

// Drop counts one packet dropped for r.
func (s *SlowStats) Drop(r DropReason) { s.drops[r].Add(1) }

// Drops is how many packets were dropped for r.
func (s *SlowStats) Drops(r DropReason) uint64 { return s.drops[r].Load() }

// AddTo adds the counters to sn's Traffic and Drops.
func (s *SlowStats) AddTo(sn *metrics.Snapshot) {
	for d := range s.traffic {
		for p := range s.traffic[d] {
			t := &s.traffic[d][p]
			sn.Traffic[d][p].Packets += t.packets.Load()
			sn.Traffic[d][p].Bytes += t.bytes.Load()
		}
	}
	addDrops(sn, &s.drops)
}
