package testnet

import (
	"net"
	"testing"
	"time"
)

func TestEchoSendsBack(t *testing.T) {
	peer := Echo(t, "udp4", "127.0.0.1:0")
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "hello" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("got %q from %v, want \"hello\" from %v", buf[:n], from, peer.LocalAddr())
	}
}
