//go:build linux

package loadgen

import (
	"net"
	"testing"
	"time"
)

// kernelDrops counts what the kernel dropped at a full receive buffer: every datagram sent to
// a socket that is not read is either queued there or counted as dropped.
func TestKernelDrops(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := rx.SetReadBuffer(4096); err != nil { // the kernel's floor: a few datagrams
		t.Fatal(err)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if d := kernelDrops(rx); d != 0 {
		t.Fatalf("fresh socket: %d drops", d)
	}
	const sent = 200
	msg := make([]byte, 1000)
	for i := 0; i < sent; i++ {
		if _, err := tx.Write(msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	// Read what was queued; the rest must show as drops. Bounded: 5 s.
	buf := make([]byte, 2048)
	read, deadline := 0, time.Now().Add(5*time.Second)
	for read+int(kernelDrops(rx)) < sent && time.Now().Before(deadline) {
		_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := rx.Read(buf); err == nil {
			read++
		}
	}
	drops := kernelDrops(rx)
	if drops == 0 || read+int(drops) != sent {
		t.Fatalf("sent %d: read %d, kernel drops %d; want some drops and read+drops = sent", sent, read, drops)
	}
}
