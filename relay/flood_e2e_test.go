//go:build linux

package relay

import (
	"context"
	"net/netip"
	"os"
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
// Refresh (and the ChannelBind that renews each channel) during the flood succeeds, no
// allocation is lost, and the live calls lose under 0.1 % of their packets, counted by
// packets. Bounded: 200 000 datagrams or 8 s of flood, whichever comes first, inside a 10 s
// send window; nothing here is timed but the bounds.
func TestFloodKeptOffLiveCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s load run")
	}
	const clients = 100
	s := startServer(t, nil)
	server := netip.MustParseAddrPort(s.addrOf(UDP))
	expiry := time.Now().Add(time.Hour)
	floodUser, _ := auth.MintREST(testSecret, "flood", expiry)

	rcvbuf0 := udpRcvbufErrors()
	var (
		once       sync.Once
		flood      = make(chan loadgen.FloodReport, 1)
		floodErr   error
		liveDuring = make(chan int, 1) // live allocations when the flood ended
	)
	startFlood := func() {
		go func() {
			rep, err := loadgen.Flood(context.Background(), loadgen.FloodConfig{
				Server: server, Sources: 1000, Count: 200_000, Duration: 8 * time.Second, Rate: floodRate,
				Username: floodUser,
			})
			floodErr = err
			sn := s.Stats()
			liveDuring <- sn.Allocations[metrics.TransportUDP][metrics.FamilyIPv4]
			flood <- rep
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
	fr := <-flood
	if floodErr != nil {
		t.Fatalf("flood: %v", floodErr)
	}
	live := <-liveDuring
	sn := s.Stats()
	t.Logf("relayed: client→peer %d, peer→client %d; kernel UDP receive-buffer drops in this namespace: %d",
		sn.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets, sn.Traffic[metrics.PeerToClient][metrics.PathChannel].Packets,
		udpRcvbufErrors()-rcvbuf0)
	t.Logf("flood: %d datagrams (%d Binding, %d Allocate) from %d sources in %.1f s (%.0f/s); drops %v",
		fr.Sent, fr.Bindings, fr.Allocates, fr.Sources, fr.Seconds, fr.PerSecond, sn.Drops)
	t.Logf("live calls: %d clients, sent %d, lost %d (%.4f %%), refreshes %d, refresh errors %d",
		rep.Clients, rep.Sent, rep.Lost, rep.LossPercent, rep.Refreshes, rep.RefreshErrors)
	if fr.Sent == 0 || fr.Allocates == 0 || fr.Bindings == 0 {
		t.Fatalf("the flood sent %d datagrams (%d Allocate, %d Binding)", fr.Sent, fr.Allocates, fr.Bindings)
	}
	if rep.RefreshErrors != 0 {
		t.Errorf("%d of %d refreshes failed during the flood", rep.RefreshErrors, rep.Refreshes+rep.RefreshErrors)
	}
	if rep.Refreshes < clients {
		t.Errorf("%d refreshes, want at least one per client (%d)", rep.Refreshes, clients)
	}
	if live != clients {
		t.Errorf("%d live allocations when the flood ended, want %d", live, clients)
	}
	if rep.Sent == 0 || rep.Lost*1000 >= rep.Sent {
		t.Errorf("live calls lost %d of %d packets, want under 0.1 %%", rep.Lost, rep.Sent)
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
