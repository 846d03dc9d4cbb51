//go:build linux

package relay

import (
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/internal/testnet"
)

// waitGen is pion's static relay address generator, with relay sockets that implement
// WaitRead and report each call on waited.
type waitGen struct {
	turn.RelayAddressGeneratorStatic
	waited chan struct{}
}

type waitConn struct {
	net.PacketConn
	waited chan struct{}
}

func (g *waitGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return waitConn{PacketConn: pc, waited: g.waited}, addr, nil
}

// WaitRead returns at once (allowed: ReadFrom then blocks), after saying it was called.
func (c waitConn) WaitRead() error {
	select {
	case c.waited <- struct{}{}:
	default:
	}
	return nil
}

var _ interface{ WaitRead() error } = (*relayConn)(nil)

// pioncompat.go, 9: pion (third_party/pion-turn, patched) asks a relay PacketConn that has
// WaitRead to wait before it takes a read buffer for it, and still relays what ReadFrom then
// returns. relayConn has WaitRead so that an idle allocation holds no read buffer; with a pion
// that does not call it, each would hold one again, and this test fails.
func TestPionWaitsBeforeTakingReadBuffer(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gen := &waitGen{RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"},
		waited: make(chan struct{}, 1)}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:             compatRealm,
		AuthHandler:       compatAuth,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: gen}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	relayed := allocateAlice(t, pc)
	defer relayed.Close()
	select {
	case <-gen.waited:
	case <-time.After(5 * time.Second):
		t.Fatal("pion's allocation reader did not call WaitRead")
	}

	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	roundTrip(t, relayed, peer.LocalAddr(), []byte("through pion's reader"))
}
