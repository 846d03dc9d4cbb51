//go:build linux

package relay

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdOverhead is what the process holds besides its relay sockets and TCP clients: the
// listeners (one socket per worker per UDP address), each worker's epoll or io_uring and
// eventfd, the HTTP listeners and their connections, log and config files, the runtime's own.
const fdOverhead = 256

// descriptorsNeeded is the number of file descriptors the relay may hold at once: one relay
// socket per allocation (as many as the relay ranges have ports, or the total quota if that
// is smaller), the listeners, and the overhead.
func (c *Config) descriptorsNeeded() uint64 {
	ports := uint64(c.MaxPort-c.MinPort+1) * uint64(len(c.RelayIPs))
	if c.MaxAllocations > 0 && uint64(c.MaxAllocations) < ports {
		ports = uint64(c.MaxAllocations)
	}
	return ports + uint64(c.Workers*len(c.Listeners)) + fdOverhead
}

// checkDescriptors makes sure the process may open every descriptor the configuration can
// ask for, so that a full relay answers 508 instead of failing on EMFILE (the TCP listeners
// retry an accept that fails so, stream.go). It raises the soft RLIMIT_NOFILE as far as the hard
// limit allows (the Go runtime already raises it to the hard limit at start) and refuses to
// start when that is still too low, saying what to change.
func (c *Config) checkDescriptors() error {
	need := c.descriptorsNeeded()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("relay: read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max > lim.Cur {
		raised := lim
		raised.Cur = min(lim.Max, need)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	if lim.Cur >= need {
		return nil
	}
	return fmt.Errorf("relay: the open-file limit (RLIMIT_NOFILE) is %d (hard limit %d), but the relay range %d-%d on %d relay address(es) can hold %d allocations, one socket each, and the relay needs %d descriptors in all: raise the limit (LimitNOFILE= in the systemd unit, ulimit -n), or narrow min-port/max-port, or set total-quota",
		lim.Cur, lim.Max, c.MinPort, c.MaxPort, len(c.RelayIPs), need-uint64(c.Workers*len(c.Listeners))-fdOverhead, need)
}
