// Package testnet holds the network ends that the tests of several packages need: a UDP echo
// peer to relay to, and a plain pion/turn server to point a client at.
package testnet

import (
	"net"
	"testing"
)

// Echo is a UDP peer on network ("udp4", "udp6") at addr that sends every datagram back to
// where it came from, until the test ends.
func Echo(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	EchoOn(t, pc)
	return pc
}

// EchoOn makes pc, a socket the test opened (in a network namespace of its own, say), an echo
// peer: every datagram goes back to where it came from until the test ends, when pc is closed.
func EchoOn(t testing.TB, pc net.PacketConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
}
