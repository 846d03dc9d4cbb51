//go:build linux

package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
)

// With one SO_REUSEPORT listener socket per worker, the kernel spreads clients over the
// workers by 5-tuple hash, and relay sockets are spread round-robin, so a client's
// ChannelData is often read by one worker and its relay socket by another. Twenty clients,
// each on its own channel number, all to one shared echo peer, must each get exactly their
// own packets back on their own channel.
func TestManyClientsOverReusePortWorkers(t *testing.T) {
	forEachDataPath(t, testManyClientsOverReusePortWorkers)
}

func testManyClientsOverReusePortWorkers(t *testing.T, path DataPath) {
	s := startServerOn(t, path, func(c *Config) { c.Workers = 4 })
	if len(s.workers) != 4 {
		t.Fatalf("%d workers, want 4", len(s.workers))
	}
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	peerAddr := peer.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort()

	const clients, n, size = 20, 25, 100
	cs := make([]*rawClient, clients)
	for i := range cs {
		cs[i] = newRawAllocation(t, s, fmt.Sprintf("user%d", i))
		if err := cs[i].channelBind(0x4000+uint16(i)*7, peerAddr); err != nil {
			t.Fatalf("client %d: ChannelBind: %v", i, err)
		}
	}
	if st := s.Stats(); st.Channels != clients || st.Allocations[metrics.TransportUDP][metrics.FamilyIPv4] != clients {
		t.Fatalf("%d channels, %d allocations; want %d of each", st.Channels, st.Allocations[metrics.TransportUDP][metrics.FamilyIPv4], clients)
	}

	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			num := 0x4000 + uint16(i)*7
			for j := 0; j < n; j++ {
				out := payload(i, j, size)
				if err := c.sendChannelData(num, out, j%2 == 0); err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				got, data, err := c.recvChannelData()
				if err != nil {
					t.Errorf("client %d packet %d: %v", i, j, err)
					return
				}
				if got != num || !bytes.Equal(data, out) {
					t.Errorf("client %d packet %d: channel %#x data % x; want %#x % x", i, j, got, data[:8], num, out[:8])
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	st := s.Stats()
	for dir := metrics.ClientToPeer; dir <= metrics.PeerToClient; dir++ {
		if got := st.Traffic[dir][metrics.PathChannel]; got.Packets != clients*n || got.Bytes != clients*n*size {
			t.Errorf("%s channel traffic %+v, want %d packets, %d bytes", dir, got, clients*n, clients*n*size)
		}
	}
	if len(st.Drops) != 0 {
		t.Errorf("drops: %v", st.Drops)
	}
	// The clients really were spread: more than one worker forwarded client→peer packets.
	busy := 0
	for _, w := range s.workers {
		if w.Stats().Packets(metrics.ClientToPeer, metrics.PathChannel) > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Errorf("only %d of 4 workers read client packets; SO_REUSEPORT did not spread 20 clients", busy)
	}
}
