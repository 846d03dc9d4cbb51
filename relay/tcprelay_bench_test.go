//go:build linux

package relay

import (
	"io"
	"net"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
)

// BenchmarkTCPRelayPump measures one direction of relayTCP on loopback: splice(2) through a
// pipe between two plain TCP sockets, against the copy through a 32 KiB buffer that a TLS
// side takes (and that pion's io.Copy does). The relaying goroutine is locked to its thread,
// whose CPU time (RUSAGE_THREAD) is reported as relay-cpu-ns/op and as bytes relayed per
// CPU-second: the writer and the reader of the test are not counted.
func BenchmarkTCPRelayPump(b *testing.B) {
	for _, mode := range []string{"splice", "copy"} {
		b.Run(mode, func(b *testing.B) {
			const chunk = 64 << 10
			srcW, srcR := tcpPair(b)
			dstW, dstR := tcpPair(b)
			s := &Server{}
			s.cfg.TCPRelayIdleTimeout = -1
			pc := &peerConn{}
			var src, dst net.Conn = srcR, dstW
			if mode == "copy" {
				src, dst = struct{ net.Conn }{srcR}, struct{ net.Conn }{dstW}
			}
			go func() {
				buf := make([]byte, chunk)
				for range b.N {
					if _, err := srcW.Write(buf); err != nil {
						return
					}
				}
				srcW.Close()
			}()
			drained := make(chan int64, 1)
			go func() {
				n, _ := io.Copy(io.Discard, dstR)
				drained <- n
			}()
			b.SetBytes(chunk)
			b.ResetTimer()
			cpu := make(chan int64, 1)
			go func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				var before, after unix.Rusage
				_ = unix.Getrusage(unix.RUSAGE_THREAD, &before)
				_, _ = s.relayTCP(pc, dst, src, metrics.ClientToPeer)
				_ = unix.Getrusage(unix.RUSAGE_THREAD, &after)
				dstW.CloseWrite()
				cpu <- unix.TimevalToNsec(after.Utime) + unix.TimevalToNsec(after.Stime) -
					unix.TimevalToNsec(before.Utime) - unix.TimevalToNsec(before.Stime)
			}()
			ns := <-cpu
			n := <-drained
			b.StopTimer()
			if n != int64(b.N)*chunk {
				b.Fatalf("relayed %d bytes, want %d", n, int64(b.N)*chunk)
			}
			b.ReportMetric(float64(ns)/float64(b.N), "relay-cpu-ns/op")
			if ns > 0 {
				b.ReportMetric(float64(n)/(float64(ns)/1e9)/1e6, "MB/cpu-s")
			}
		})
	}
}

// tcpPair returns the two ends of a TCP connection on loopback.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}
