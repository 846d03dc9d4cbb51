//go:build linux

package relay

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/loadgen"
	"github.com/avedge/avedge/metrics"
)

// Floods are kept off live calls (issue 13): while live allocations relay packets on
// channels and refresh, a flood of spoofed Binding requests and of Allocate requests with
// MESSAGE-INTEGRITY under a wrong password arrives from a thousand source addresses. Every
// Refresh during the flood succeeds (the load generator's own, and a round of Refreshes of
// further allocations made while the flood is known to run), no allocation is lost, and the
// live calls lose under 0.1 % of their packets, counted by packets. Bounded: the flood stops
// after 200 000 datagrams or 20 s, or once the load run and the round are over; nothing is
// timed but those bounds.
func TestFloodKeptOffLiveCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s load run")
	}
	const clients, extra = 100, 20
	// As cmd/avedge runs it: a scheduler slot for each worker beyond the cores, so that the
	// workers keep reading the listener sockets while pion's shards and the test's own load
	// take the cores' slots (with GOMAXPROCS at the core count the workers park and wait
	// for a slot, and the kernel drops at the socket, flood and live packets alike).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 2))
	s := startServer(t, nil)
	server := netip.MustParseAddrPort(s.addrOf(UDP))
	expiry := time.Now().Add(time.Hour)
	floodUser, _ := auth.MintREST(testSecret, "flood", expiry)
	var raws []*rawClient
	for i := 0; i < extra; i++ {
		u, p := auth.MintREST(testSecret, "extra"+strconv.Itoa(i), expiry)
		c := dialRaw(t, s.addrOf(UDP), u, p)
		if err := c.allocate(); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		raws = append(raws, c)
	}
	rcvbuf0 := udpRcvbufErrors()

	type floodResult struct {
		rep  loadgen.FloodReport
		err  error
		live int // live UDP allocations when the round of Refreshes ended
		// Refresh errors of the round, and whether the flood still ran when it ended.
		roundErrs  []error
		underFlood bool
	}
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	floodCh := make(chan floodResult, 1)
	startFlood := func() {
		go func() {
			var res floodResult
			done := make(chan struct{})
			go func() {
				defer close(done)
				res.rep, res.err = loadgen.Flood(ctx, loadgen.FloodConfig{
					Server: server, Sources: 1000, Count: 200_000, Duration: 20 * time.Second, Rate: floodRate,
					Username: floodUser, NoncePerSource: true, // nonces are bound to the client
				})
			}()
			// The round starts once the server has seen the flood (bounded: 10 s).
			b0 := s.Stats().BindingRequests
			for i := 0; i < 1000 && s.Stats().BindingRequests == b0; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			for _, c := range raws {
				if err := c.refresh(10 * time.Minute); err != nil {
					res.roundErrs = append(res.roundErrs, err)
				}
			}
			select {
			case <-done:
			default:
				res.underFlood = true
			}
			res.live = s.Stats().Allocations[metrics.TransportUDP][metrics.FamilyIPv4]
			<-done // the run's end cancels ctx
			floodCh <- res
		}()
	}
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		Server: server, Mode: loadgen.ModeChannel, Clients: clients, Rate: 50, Size: 160,
		Duration: 10 * time.Second, RefreshInterval: time.Second, Drain: 2 * time.Second,
		Credentials: func(i int) (string, string) {
			return auth.MintREST(testSecret, "live"+strconv.Itoa(i), expiry)
		},
		// The flood starts with the send window: every allocation is made and relaying.
		Progress: func(loadgen.Progress) { once.Do(startFlood) },
	})
	if err != nil {
		t.Fatalf("load run: %v", err)
	}
	cancel()
	fr := <-floodCh
	if fr.err != nil {
		t.Fatalf("flood: %v", fr.err)
	}
	sn := s.Stats()
	// Kernel drops at full receive buffers, by whose socket: the flood's own (its answers
	// are never read), the load generator's (clients and echo peer: probes lost because the
	// generator, in this process, did not get the CPU to read them on a loaded machine), and
	// the rest of the namespace, which is mostly the relay's (listener and relayed sockets).
	nsDrops := udpRcvbufErrors() - rcvbuf0
	relaySide := nsDrops - min(nsDrops, fr.rep.KernelDrops+rep.KernelDrops)
	t.Logf("relayed: client→peer %d, peer→client %d; kernel UDP receive-buffer drops in this namespace: %d "+
		"(at the flood's sockets %d, at the load generator's %d, elsewhere, mostly the relay's, %d)",
		sn.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets, sn.Traffic[metrics.PeerToClient][metrics.PathChannel].Packets,
		nsDrops, fr.rep.KernelDrops, rep.KernelDrops, relaySide)
	t.Logf("flood: %d datagrams (%d Binding, %d Allocate) from %d sources in %.1f s (%.0f/s); drops %v",
		fr.rep.Sent, fr.rep.Bindings, fr.rep.Allocates, fr.rep.Sources, fr.rep.Seconds, fr.rep.PerSecond, sn.Drops)
	t.Logf("live calls: %d clients, sent %d, lost %d (%.4f %%), refreshes %d, refresh errors %d",
		rep.Clients, rep.Sent, rep.Lost, rep.LossPercent, rep.Refreshes, rep.RefreshErrors)
	if fr.rep.Sent == 0 || fr.rep.Allocates == 0 || fr.rep.Bindings == 0 {
		t.Fatalf("the flood sent %d datagrams (%d Allocate, %d Binding)", fr.rep.Sent, fr.rep.Allocates, fr.rep.Bindings)
	}
	if !fr.underFlood {
		t.Errorf("the flood ended (%d datagrams, %.1f s) before the round of Refreshes did", fr.rep.Sent, fr.rep.Seconds)
	}
	for _, err := range fr.roundErrs {
		t.Errorf("Refresh during the flood: %v", err)
	}
	if rep.RefreshErrors != 0 || rep.Refreshes == 0 {
		t.Errorf("load generator: %d refreshes, %d failed; want some, none failed", rep.Refreshes, rep.RefreshErrors)
	}
	if fr.live != clients+extra {
		t.Errorf("%d live allocations after the round of Refreshes under the flood, want %d", fr.live, clients+extra)
	}
	// The live calls' loss is the relay's except where the kernel dropped a probe or its echo
	// at the load generator's own full socket (each such drop loses one probe at most): that
	// is this process's load generator starved of CPU on a loaded machine, not the relay
	// letting the flood in, and it is reported above, not failed. Drops at the relay's own
	// sockets still count against the relay. Each way is excused only by the drops at the
	// socket it ends at: on the way out (client → echo peer) the echo peer's, on the way back
	// the clients'.
	out := rep.Sent - min(rep.Sent, rep.PeerReceived)
	back := rep.PeerReceived - min(rep.PeerReceived, rep.Received)
	relayLost := out - min(out, rep.PeerKernelDrops) + back - min(back, rep.ClientKernelDrops)
	if rep.Sent == 0 || relayLost*1000 >= rep.Sent {
		t.Errorf("live calls lost %d of %d packets, %d on the way out (%d dropped by the kernel at the echo peer's socket), "+
			"%d on the way back (%d at the clients' sockets): %d not at the load generator, want under 0.1 %%",
			rep.Lost, rep.Sent, out, rep.PeerKernelDrops, back, rep.ClientKernelDrops, relayLost)
	}
}

// udpRcvbufErrors reads the kernel's count of UDP datagrams dropped for a full receive
// buffer (RcvbufErrors in /proc/net/snmp, per network namespace); 0 if unreadable.
func udpRcvbufErrors() uint64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
	}
	return 0
}
