//go:build linux

package relay

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/relay/internal/dataplane"
)

// Issue 14, item 3: a relay socket closed while another worker still has a send queued on it
// lets the payload leave through whatever socket gets the fd number next (Linux hands out the
// lowest free one). Clients on four SO_REUSEPORT workers blast ChannelData while their
// allocations are deleted with Refresh(0); meanwhile a churner opens TCP connections and UDP
// sockets, which take the freed numbers. No byte may reach any of them, and every peer may
// receive only its own client's payloads, from that client's relayed address. The natural
// window is microseconds wide, so a pass here says little on its own:
// dataplane.TestCloseRelayWaitsForQueuedSends holds the window open and fails without the
// grace period, and so does TestDeleteRacingChannelDataWidened (built with -tags
// avedge_testhooks); this test checks the whole server keeps the rule under -race.
func TestDeleteRacingChannelDataLeaksNothing(t *testing.T) {
	forEachDataPath(t, func(t *testing.T, path DataPath) { testDeleteRacingChannelData(t, path, 8, 6*time.Second, nil) })
}

// testDeleteRacingChannelData runs the race, at most iters times and for about budget. widen,
// if set, is called with true just before the deletes and with false once they are done
// (fdreuse_hook_e2e_test.go widens the window between a worker's lookup and its send
// meanwhile).
func testDeleteRacingChannelData(t *testing.T, path DataPath, iters int, budget time.Duration, widen func(on bool)) {
	s := startServerOn(t, path, func(c *Config) {
		c.Workers = 4
		c.AllocationBandwidth = -1 // every datagram through the race, none dropped by the cap
	})
	const (
		clients = 4
		perIter = 200000 // datagrams a client sends at most per iteration (it stops after the deletes)
	)
	start := time.Now()
	var sent, leaked atomic.Int64
	for it := 0; it < iters && time.Since(start) < budget && !t.Failed(); it++ {
		cs := make([]*rawClient, clients)
		peers := make([]*udpPeer, clients)
		for i := range cs {
			peers[i] = newUDPPeer(t, "127.0.0.1:0")
			cs[i] = newRawAllocation(t, s, fmt.Sprintf("race%d-%d", it, i))
			if err := cs[i].channelBind(0x4000+uint16(i), peers[i].addr()); err != nil {
				t.Fatalf("iteration %d client %d: ChannelBind: %v", it, i, err)
			}
		}
		// Every peer reads until its socket is closed and checks each datagram.
		var readers sync.WaitGroup
		got := make([]atomic.Int64, clients)
		for i, p := range peers {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					b, from, err := p.recv(rawTimeout)
					if err != nil {
						return
					}
					if from != cs[i].relayed || len(b) < 8 || int(binary.BigEndian.Uint32(b)) != it ||
						int(binary.BigEndian.Uint16(b[4:])) != i {
						leaked.Add(1)
						t.Errorf("iteration %d: peer %d got % x from %v; want its client's payload from %v",
							it, i, b[:min(len(b), 8)], from, cs[i].relayed)
						continue
					}
					got[i].Add(1)
				}
			}()
		}
		stop := make(chan struct{})
		var senders sync.WaitGroup
		for i, c := range cs {
			senders.Add(1)
			go func() {
				defer senders.Done()
				b := make([]byte, 64)
				binary.BigEndian.PutUint32(b, uint32(it))
				binary.BigEndian.PutUint16(b[4:], uint16(i))
				for j := 0; j < perIter; j++ {
					select {
					case <-stop:
						return
					default:
					}
					binary.BigEndian.PutUint16(b[6:], uint16(j))
					if err := c.sendChannelData(0x4000+uint16(i), b, false); err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					sent.Add(1)
					if widen != nil && j%16 == 15 {
						// Paced: workers held up by the widened window must not drop the
						// Refresh requests in a flood.
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
		}
		// Let traffic flow through every allocation, then delete them all at once.
		pollUntil(t, "traffic on every allocation", func() bool {
			for i := range got {
				if got[i].Load() == 0 {
					return false
				}
			}
			return true
		})
		// The churner opens sockets while the allocations go, so that it takes their numbers.
		ch := newChurner(t)
		churnStop, churned := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(churned)
			ch.run(t, churnStop, 1000)
		}()
		if widen != nil {
			widen(true)
		}
		var deleters sync.WaitGroup
		for i, c := range cs {
			deleters.Add(1)
			go func() {
				defer deleters.Done()
				if err := refreshZeroUnderFlood(c); err != nil {
					t.Errorf("iteration %d client %d: Refresh(0): %v", it, i, err)
				}
			}()
		}
		deleters.Wait()
		if widen != nil {
			widen(false)
		}
		close(churnStop)
		<-churned
		close(stop)
		senders.Wait()
		// Every send a worker looked up before a delete has left once each worker has
		// passed a quiescent point after it.
		dataplane.Quiesce(s.workers)
		ch.check(t, 0)
		leaked.Add(ch.leaked)
		for _, p := range peers {
			p.conn.Close()
		}
		readers.Wait()
	}
	pollUntil(t, "every allocation gone", func() bool { return noAllocations(s) })
	t.Logf("%s: %d datagrams sent around the deletes in %v; %d reached the wrong socket", path, sent.Load(),
		time.Since(start).Round(time.Millisecond), leaked.Load())
}

// churner opens connected TCP pairs and UDP sockets by raw system calls, so that they take
// the lowest free descriptor numbers.
type churner struct {
	lfd    int
	sa     unix.Sockaddr
	mu     sync.Mutex
	fds    [][]int // the sockets of each open, oldest first. Guarded by mu.
	leaked int64   // sockets found with bytes waiting. Guarded by mu.
}

func newChurner(t *testing.T) *churner {
	t.Helper()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := &churner{lfd: lfd}
	t.Cleanup(c.close)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 64); err != nil {
		t.Fatal(err)
	}
	if c.sa, err = unix.Getsockname(lfd); err != nil {
		t.Fatal(err)
	}
	return c
}

// run opens sockets until stop is closed, at most max times. It closes none meanwhile: a
// number it freed itself would be the lowest free one and be taken before a relay socket's.
func (c *churner) run(t *testing.T, stop <-chan struct{}, max int) {
	for k := 0; k < max; k++ {
		select {
		case <-stop:
			return
		default:
		}
		c.open(t)
	}
}

// open adds a TCP connection (both ends) and a UDP socket.
func (c *churner) open(t *testing.T) {
	var set []int
	defer func() {
		c.mu.Lock()
		c.fds = append(c.fds, set)
		c.mu.Unlock()
	}()
	cl, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Error(err)
		return
	}
	set = append(set, cl)
	if err := unix.Connect(cl, c.sa); err != nil {
		t.Error(err)
		return
	}
	sv, _, err := unix.Accept4(c.lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Error(err)
		return
	}
	set = append(set, sv)
	u, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Error(err)
		return
	}
	set = append(set, u)
	if err := unix.Bind(u, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Error(err)
	}
}

// check checks and closes the oldest sets until keep are left, and counts (and reports) the
// sockets that have bytes waiting: a TCP end whose peer end took a relay socket's number, or
// a UDP socket something was sent to. Loopback delivers within the sending system call, so
// a look without waiting is exact once the send was made.
func (c *churner) check(t *testing.T, keep int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.fds) > keep {
		for _, fd := range c.fds[0] {
			if q, err := unix.IoctlGetInt(fd, unix.SIOCINQ); err == nil && q != 0 {
				t.Errorf("socket fd %d, opened around the deletes, has %d bytes waiting", fd, q)
				c.leaked++
			}
			unix.Close(fd)
		}
		c.fds = c.fds[1:]
	}
}

// close closes what is left (the test has checked it).
func (c *churner) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, set := range c.fds {
		for _, fd := range set {
			unix.Close(fd)
		}
	}
	c.fds = nil
	unix.Close(c.lfd)
}

// refreshZeroUnderFlood deletes c's allocation while c's own ChannelData floods the relay's
// listener sockets, where a request can be lost to a full receive buffer like any datagram:
// it retransmits as a TURN client does (RFC 8489 §6.2.1: up to 7 times), in rounds of the raw
// client's four. A retransmission whose first copy was handled finds no allocation (437):
// the delete happened.
func refreshZeroUnderFlood(c *rawClient) error {
	var err error
	for round := 0; round < 3; round++ {
		err = c.refresh(0)
		if err == nil || (round > 0 && errorCode(err) == stun.CodeAllocMismatch) {
			return nil
		}
		if errorCode(err) != 0 {
			return err // an answer, and not the one wanted
		}
	}
	return err
}
