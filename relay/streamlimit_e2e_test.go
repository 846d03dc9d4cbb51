//go:build linux

package relay

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// bindingRequest is a STUN Binding request, as a client's first message.
func bindingRequest(t testing.TB) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// readSTUN reads one STUN message from a stream.
func readSTUN(c net.Conn) (*stun.Message, error) {
	_ = c.SetReadDeadline(time.Now().Add(rawTimeout))
	h := make([]byte, stunHeaderSize)
	if _, err := io.ReadFull(c, h); err != nil {
		return nil, err
	}
	b := make([]byte, stunHeaderSize+int(binary.BigEndian.Uint16(h[2:4])))
	copy(b, h)
	if _, err := io.ReadFull(c, b[stunHeaderSize:]); err != nil {
		return nil, err
	}
	m := &stun.Message{Raw: b}
	return m, m.Decode()
}

// waitClosed waits for the relay to close c (EOF or reset), and fails t if it has not after
// limit.
func waitClosed(t testing.TB, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	n, err := c.Read(make([]byte, 1))
	switch {
	case n > 0:
		t.Fatalf("read %d bytes; want the connection closed", n)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatalf("connection still open after %v", limit)
	case err != io.EOF && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("read: %v; want the connection closed", err)
	}
}

// A silent connection costs a file descriptor and a goroutine: the relay closes one that
// sends no valid message, one that sends nothing more, and one that never finishes its TLS
// handshake (pion's own handshake timeout applies only to a *tls.Conn, which framedConn is
// not). The timeouts are short here; each subtest waits for the close itself.
func TestStreamTimeouts(t *testing.T) {
	cert, _ := selfSigned(t)
	lo := netip.MustParseAddrPort("127.0.0.1:0")
	start := func(t *testing.T, mod func(c *Config)) *Server {
		return startServer(t, func(c *Config) {
			c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}, {Network: TCP, Addr: lo}, {Network: TLS, Addr: lo}}
			c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			c.StreamFirstMessageTimeout = time.Minute
			c.StreamIdleTimeout = time.Minute
			c.TLSHandshakeTimeout = time.Minute
			mod(c)
		})
	}
	dial := func(t *testing.T, addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("no first message", func(t *testing.T) {
		s := start(t, func(c *Config) { c.StreamFirstMessageTimeout = 200 * time.Millisecond })
		c := dial(t, s.addrOf(TCP))
		// Half a STUN header is no message.
		if _, err := c.Write(bindingRequest(t)[:10]); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c, 5*time.Second)
		if n := s.streamStats.firstTimeout.Load(); n != 1 {
			t.Fatalf("first-message timeouts %d, want 1", n)
		}
		// A client that sends one in time is answered.
		c = dial(t, s.addrOf(TCP))
		if _, err := c.Write(bindingRequest(t)); err != nil {
			t.Fatal(err)
		}
		if m, err := readSTUN(c); err != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("Binding: %v %v", m, err)
		}
	})

	t.Run("idle", func(t *testing.T) {
		s := start(t, func(c *Config) { c.StreamIdleTimeout = 300 * time.Millisecond })
		c := dial(t, s.addrOf(TCP))
		if _, err := c.Write(bindingRequest(t)); err != nil {
			t.Fatal(err)
		}
		if m, err := readSTUN(c); err != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("Binding: %v %v", m, err)
		}
		waitClosed(t, c, 5*time.Second)
		if n := s.streamStats.idleTimeout.Load(); n != 1 {
			t.Fatalf("idle timeouts %d, want 1", n)
		}
		if n := s.conns.live(); n != 0 {
			t.Fatalf("%d connections still counted after the close", n)
		}
	})

	t.Run("client not reading", func(t *testing.T) {
		s := start(t, func(c *Config) {
			c.StreamWriteTimeout = 300 * time.Millisecond
			// Binding answers beyond BindingRate are dropped, not written: the relay would
			// never block on this client, only count drops.
			c.BindingRate = -1
		})
		// A small receive buffer shuts the client's window after a few answers; the requests
		// go on until the relay stops reading them, blocked writing its answers.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 2048)
		// A small MSS keeps the relay's send buffer small too: Linux sizes it by segments
		// (loopback's are 64 KB), and the relay blocks once it is full.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG, 536)
		dst := netip.MustParseAddrPort(s.addrOf(TCP))
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
			t.Fatal(err)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		reqs := bytes.Repeat(bindingRequest(t), 1000)
		// A write to the non-blocking socket may take part of reqs: the rest goes first next
		// time, or the relay would read a frame cut in two and close the connection for it.
		rest := reqs
		deadline := time.Now().Add(10 * time.Second)
		for s.streamStats.writeTimeout.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the relay still writes to a client that reads nothing after 10s (answers dropped: %v)", s.Stats().Drops)
			}
			n, err := unix.Write(fd, rest)
			if err != nil && err != unix.EAGAIN {
				break // the relay closed the connection
			}
			if rest = rest[max(n, 0):]; len(rest) == 0 {
				rest = reqs
			}
			// Wait for room in the send buffer, or poll the counter again after 5 ms.
			_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 5)
		}
		if n := s.streamStats.tooLarge.Load(); n != 0 {
			t.Fatalf("the relay closed the connection for a frame too large (%d): the requests were cut", n)
		}
		pollUntil(t, "the write timeout counted", func() bool { return s.streamStats.writeTimeout.Load() == 1 })
		pollUntil(t, "the connection's slot given back", func() bool { return s.conns.live() == 0 })
	})

	t.Run("relay closed", func(t *testing.T) {
		// Close ends every connection, not only the listeners (pion's read loop of each
		// would wait for its client otherwise).
		s := start(t, func(*Config) {})
		c := dial(t, s.addrOf(TCP))
		if _, err := c.Write(bindingRequest(t)); err != nil {
			t.Fatal(err)
		}
		if m, err := readSTUN(c); err != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("Binding: %v %v", m, err)
		}
		silent := dial(t, s.addrOf(TLS))
		pollUntil(t, "both connections accepted", func() bool { return s.conns.live() == 2 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c, 5*time.Second)
		waitClosed(t, silent, 5*time.Second)
		if n := s.conns.live(); n != 0 {
			t.Fatalf("%d connections counted after Close", n)
		}
	})

	t.Run("tls handshake", func(t *testing.T) {
		s := start(t, func(c *Config) { c.TLSHandshakeTimeout = 200 * time.Millisecond })
		c := dial(t, s.addrOf(TLS))
		waitClosed(t, c, 5*time.Second)
		pollUntil(t, "the handshake failure counted", func() bool { return s.streamStats.handshake.Load() == 1 })
	})
}

// rawStream is a client TCP socket held as a bare file descriptor: tens of thousands of them
// cost the test process no Go memory, so that the RSS measured is the relay's.
func rawStream(t testing.TB, src netip.Addr, dst netip.AddrPort) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	// The port is chosen at connect, for the 4-tuple, rather than by bind for the address.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
		unix.Close(fd)
		t.Fatalf("bind %s: %v", src, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		t.Fatalf("connect %s -> %s: %v", src, dst, err)
	}
	return fd
}

// rawClosed reports whether the relay has closed the connection of fd (EOF or reset).
func rawClosed(fd int) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_DONTWAIT|unix.MSG_PEEK)
	return err == nil && n == 0 || err == unix.ECONNRESET
}

// vmRSS returns the test process's resident set size in bytes, from /proc/self/status.
func vmRSS(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// raiseNoFile raises the test process's open-file limit to want if it can (root can raise
// the hard limit too), restores it at cleanup, and returns the limit in force.
func raiseNoFile(t testing.TB, want uint64) uint64 {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	if old.Cur >= want {
		return old.Cur
	}
	lim := unix.Rlimit{Cur: want, Max: max(want, old.Max)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		lim = unix.Rlimit{Cur: old.Max, Max: old.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return old.Cur
		}
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) })
	return lim.Cur
}

// TestStreamConnectionCaps opens 50 000 TCP connections from 2 000 loopback sources (25
// each) to a relay that admits one per source and 2 500 in all, and holds open every one the
// relay keeps. Every connection beyond a cap is closed; the relay's memory grows by what the
// admitted ones cost rather than by what 50 000 would; UDP and TCP clients with credentials
// are still served. Then 600 more sources fill the total cap, and the connections beyond it
// are closed.
//
// The test process closes its end of a connection once the relay has closed it: it may not
// hold 50 000 descriptors (the hard open-file limit here is below that, and raising it needs
// CAP_SYS_RESOURCE), and the relay holds nothing of a closed one.
func TestStreamConnectionCaps(t *testing.T) {
	const (
		sources   = 2000
		perSource = 25
		capSource = 1
		capTotal  = 2500
		extra     = 600 // sources of the second round, one connection each
		round     = 40  // sources per round: 1 000 connections, within the listen backlog
	)
	if lim := raiseNoFile(t, capTotal+round*perSource+2000); lim < capTotal+round*perSource+2000 {
		t.Skipf("open-file limit %d is too low for this test", lim)
	}
	s := startServer(t, func(c *Config) {
		c.MaxStreamConns = capTotal
		c.MaxStreamConnsPerSource = capSource
		c.StreamFirstMessageTimeout = -1 // the caps alone bound silent connections here
	})
	dst := netip.MustParseAddrPort(s.addrOf(TCP))
	var held []int // client ends of the connections the relay keeps
	t.Cleanup(func() {
		for _, fd := range held {
			unix.Close(fd)
		}
	})
	// Source i is 127.1.i/250.i%250+1: none is 127.0.0.1, the served clients' source.
	src := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{127, 1 + byte(i/62500), byte(i / 250 % 250), byte(i%250 + 1)})
	}
	refused := func() uint64 { return s.streamStats.overSource.Load() + s.streamStats.overTotal.Load() }
	// flood opens n connections from each source of [from, to), a round of sources at a time.
	// Once the relay has accepted a round's connections and its closes have arrived, check
	// sees each source's connections still open (nil: not checked); the closed ones are
	// closed here too and the open ones held.
	flood := func(from, to, n int, check func(src netip.Addr, open int)) {
		deadline := time.Now().Add(60 * time.Second)
		wait := func(what string, cond func() bool) {
			for !cond() {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting for %s", what)
				}
				time.Sleep(time.Millisecond) // bounded poll of the relay's counters, as pollUntil
			}
		}
		for r := from; r < to; r += round {
			acc0, ref0, live0 := s.streamStats.accepted.Load(), refused(), s.conns.live()
			var fds []int
			for i := r; i < min(r+round, to); i++ {
				for k := 0; k < n; k++ {
					fds = append(fds, rawStream(t, src(i), dst))
				}
			}
			wait("the relay to accept a round", func() bool { return s.streamStats.accepted.Load()-acc0 == uint64(len(fds)) })
			// A connection is counted accepted before the caps decide on it: wait until each
			// one is either held or counted refused, or the last refusals would be missed.
			wait("the relay to decide on a round", func() bool {
				return s.conns.live()-live0+int(refused()-ref0) == len(fds)
			})
			want := int(refused() - ref0)
			wait("the relay's closes to arrive", func() bool {
				c := 0
				for _, fd := range fds {
					if rawClosed(fd) {
						c++
					}
				}
				return c == want
			})
			for i := r; i < min(r+round, to); i++ {
				open := 0
				for _, fd := range fds[(i-r)*n : (i-r+1)*n] {
					if rawClosed(fd) {
						unix.Close(fd)
					} else {
						held = append(held, fd)
						open++
					}
				}
				if check != nil {
					check(src(i), open)
				}
			}
		}
	}

	runtime.GC()
	debug.FreeOSMemory()
	rss0 := vmRSS(t)
	t0 := time.Now()
	flood(0, sources, perSource, func(src netip.Addr, open int) {
		if open != capSource {
			t.Fatalf("source %s: %d connections open, want %d", src, open, capSource)
		}
	})
	const attempts = sources * perSource
	runtime.GC()
	debug.FreeOSMemory()
	grew := vmRSS(t) - rss0
	t.Logf("%d connections from %d sources in %v: %d held, RSS +%d KiB (%d bytes per connection attempt)",
		attempts, sources, time.Since(t0).Round(time.Millisecond), s.conns.live(), grew>>10, grew/attempts)
	if got := s.conns.live(); got != sources*capSource {
		t.Fatalf("%d connections held, want %d (one per source)", got, sources*capSource)
	}
	if got, want := s.streamStats.overSource.Load(), uint64(sources*(perSource-capSource)); got != want {
		t.Fatalf("%d closed over the per-source cap, want %d", got, want)
	}
	// A connection the relay holds costs a goroutine, its stack and buffers (several KiB; the
	// race detector multiplies it); one closed at once costs nothing lasting. Holding all
	// 50 000 would cost several times this bound.
	perAttempt := int64(1 << 10)
	if raceEnabled {
		perAttempt = 6 << 10
	}
	if grew > attempts*perAttempt {
		t.Fatalf("RSS grew %d KiB for %d connection attempts, want at most %d KiB", grew>>10, attempts, attempts*perAttempt>>10)
	}

	// Clients with credentials are still served, over UDP and TCP.
	if _, err := newClient(t, s, "udp-user").Allocate(); err != nil {
		t.Fatalf("UDP Allocate during the flood: %v", err)
	}
	username, password := auth.MintREST(testSecret, "tcp-user", time.Now().Add(time.Hour))
	if _, err := newStreamClient(t, s.addrOf(TCP), nil, username, password).Allocate(); err != nil {
		t.Fatalf("TCP Allocate during the flood: %v", err)
	}
	if st := s.Stats(); st.Allocations[metrics.TransportUDP][metrics.FamilyIPv4] != 1 || st.Allocations[metrics.TransportTCP][metrics.FamilyIPv4] != 1 {
		t.Fatalf("allocations %v, want one over UDP and one over TCP", st.Allocations)
	}

	// The total cap: 600 more sources, with room for capTotal less what is held.
	room := capTotal - s.conns.live()
	kept := len(held)
	flood(sources, sources+extra, 1, nil)
	if got := s.conns.live(); got != capTotal {
		t.Fatalf("%d connections held, want the cap, %d", got, capTotal)
	}
	if got := len(held) - kept; got != room {
		t.Fatalf("%d of the last %d connections open, want %d", got, extra, room)
	}
	if got, want := s.streamStats.overTotal.Load(), uint64(extra-room); got != want {
		t.Fatalf("%d closed over the total cap, want %d", got, want)
	}
}

// An Accept that fails for want of file descriptors (EMFILE) must not end the listener: pion's
// accept loop returns on the first error and closes the listener's allocations with it. The
// test lowers its own open-file limit until the relay's accept fails, lifts it, and expects
// the waiting connections answered and the live allocation kept.
func TestStreamAcceptRetriesEMFILE(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	live := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	if _, err := live.Allocate(); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort(s.addrOf(TCP))
	req := bindingRequest(t)

	// The client sockets exist before the limit drops: connecting needs no descriptor.
	var fds [3]int
	for i := range fds {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
		t.Cleanup(func() { unix.Close(fd) })
	}
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	// Every descriptor number below the lowest free one is taken: a limit there leaves none.
	free, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(free)
	restore := func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Fatalf("restore the open-file limit: %v", err)
		}
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(free), Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}); err != nil {
			restore()
			t.Fatalf("connect: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.streamStats.acceptErrors.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // bounded poll, as pollUntil (which must not fail with the limit down)
	}
	restore()
	if s.streamStats.acceptErrors.Load() == 0 {
		t.Fatal("the relay's accept never failed with the open-file limit down")
	}

	// The connections that waited are served.
	for i, fd := range fds {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5}); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(fd, req); err != nil {
			t.Fatalf("connection %d: write: %v", i, err)
		}
		b := make([]byte, 512)
		n, err := unix.Read(fd, b)
		if err != nil || n < stunHeaderSize {
			t.Fatalf("connection %d: no answer after the limit was lifted (%d bytes, %v)", i, n, err)
		}
		if m := (&stun.Message{Raw: b[:n]}); m.Decode() != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("connection %d: answer % x, want a Binding success", i, b[:n])
		}
	}
	// The allocation made before is still there.
	if _, err := live.SendBindingRequest(); err != nil {
		t.Fatalf("the live client after EMFILE: %v", err)
	}
	if st := s.Stats(); st.Allocations[metrics.TransportTCP][metrics.FamilyIPv4] != 1 {
		t.Fatalf("allocations %v after EMFILE, want the TCP one kept", st.Allocations)
	}
}
