package testnet

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/turn/v5"
)

// PionTURN runs a plain pion/turn v5 server on 127.0.0.1 (UDP) that accepts TURN REST
// credentials minted with secret, until the test ends, and returns its address.
func PionTURN(t testing.TB, secret string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:       "avedge.test",
		AuthHandler: turn.LongTermTURNRESTAuthHandler(secret, nil),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.IPv4(127, 0, 0, 1),
				Address:      "127.0.0.1",
			},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}
