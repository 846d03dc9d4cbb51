//go:build linux && avedge_testhooks

package relay

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/avedge/avedge/relay/internal/dataplane"
)

// TestDeleteRacingChannelDataWidened is TestDeleteRacingChannelDataLeaksNothing with the
// window held open: while the allocations are deleted, every worker pauses between its
// lookups and their send (dataplane.BeforeSend, built only with -tags avedge_testhooks), as
// a worker preempted there would. Without the grace period the churner's sockets get the
// relay sockets' numbers within that pause and the queued payloads land in them.
//
//	go test -tags avedge_testhooks -race -run Widened ./relay/
func TestDeleteRacingChannelDataWidened(t *testing.T) {
	var on atomic.Bool
	pause := func() {
		if on.Load() {
			time.Sleep(300 * time.Microsecond) // widens a race window; the test's verdict does not depend on it
		}
	}
	dataplane.BeforeSend.Store(&pause)
	t.Cleanup(func() { dataplane.BeforeSend.Store(nil) })
	forEachDataPath(t, func(t *testing.T, path DataPath) { testDeleteRacingChannelData(t, path, 30, 20*time.Second, on.Store) })
}
