//go:build linux

package relay

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
)

var soakFor = flag.Duration("soak", 3*time.Second, "how long TestSoakChurn churns allocations (e.g. -soak=2m)")

// resources is what a relay holds that must return to its baseline when no allocation is
// left.
type resources struct {
	goroutines int
	fds        int
	heap       uint64
}

func measure(t *testing.T) resources {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count open files: %v", err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return resources{goroutines: runtime.NumGoroutine(), fds: len(ents), heap: ms.HeapAlloc}
}

// soakRawClient is a raw client without test cleanups (a long soak makes thousands); the
// caller closes its socket.
func soakRawClient(t *testing.T, server string, user string) *rawClient {
	t.Helper()
	sa, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	return &rawClient{conn: conn, server: sa, username: username, password: password}
}

// soakStreamClient is newStreamClient without test cleanups; close returns it all.
func soakStreamClient(t *testing.T, server string, roots *x509.CertPool, user string) (c *turn.Client, close func()) {
	t.Helper()
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	d := net.Dialer{Timeout: rawTimeout}
	var conn net.Conn
	var err error
	if roots != nil {
		conn, err = tls.DialWithDialer(&d, "tcp", server, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	} else {
		conn, err = d.Dial("tcp", server)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", server, err)
	}
	c, err = turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server,
		Conn: turn.NewSTUNConn(conn), Username: username, Password: password, Realm: "avedge",
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		c.Close()
		conn.Close()
		t.Fatal(err)
	}
	return c, func() { c.Close(); conn.Close() }
}

// TestSoakChurn churns allocations for -soak (3 s by default): each one is created, carries
// traffic both ways on a channel, and ends one of four ways — Refresh 0 (RFC 8656 §8:
// "a Refresh request with a LIFETIME of 0 ... deletes the allocation"), a short Refresh and
// then expiry, plain expiry with its channel and permission expiring first, or (over TCP
// and TLS) the client closing its connection. At the end goroutines, open files, relay ports
// and heap must be back to where they started.
func TestSoakChurn(t *testing.T) {
	cert, roots := selfSigned(t)
	s := startServer(t, func(c *Config) {
		lo := netip.MustParseAddrPort("127.0.0.1:0")
		c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}, {Network: TCP, Addr: lo}, {Network: TLS, Addr: lo}}
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.AllocationLifetime = time.Second
		c.PermissionLifetime = 500 * time.Millisecond
		c.ChannelLifetime = 500 * time.Millisecond
		c.AllocateRate = -1 // every client is 127.0.0.1: the churn is not an attack
		c.PortQuarantine = -1
		c.UserQuota = -1 // seven users share the churn, with expiring allocations lingering
	})
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	// One warm-up of each kind, so that what the runtime and pion start once (timers, the
	// TLS session machinery) is part of the baseline.
	warm := soakRawClient(t, s.addrOf(UDP), "warm")
	if err := warm.allocate(); err != nil {
		t.Fatalf("warm-up allocate: %v", err)
	}
	_ = warm.refresh(0)
	warm.conn.Close()
	for _, n := range []Network{TCP, TLS} {
		r := roots
		if n == TCP {
			r = nil
		}
		c, done := soakStreamClient(t, s.addrOf(n), r, "warm")
		if _, err := c.SendBindingRequest(); err != nil {
			t.Fatalf("warm-up binding over %s: %v", n, err)
		}
		done()
	}
	pollUntil(t, "the warm-up allocation to end", func() bool { return noAllocations(s) })
	base := settle(t)

	// A client socket whose allocation is left to expire stays open until the allocation
	// is surely gone: were its port reused by the next client, that client's 5-tuple would
	// still name the old allocation (437 Allocation Mismatch, RFC 8656 §7.2).
	type held struct {
		conn  *net.UDPConn
		until time.Time
	}
	var lingering []held
	closeLingering := func(now time.Time) {
		for len(lingering) > 0 && (now.IsZero() || lingering[0].until.Before(now)) {
			lingering[0].conn.Close()
			lingering = lingering[1:]
		}
	}
	defer closeLingering(time.Time{})

	deadline := time.Now().Add(*soakFor)
	var created, deleted, refreshed, expired, streams int
	maxRounds := 1_000_000 // bounded whatever -soak says
	for round := 0; round < maxRounds && time.Now().Before(deadline); round++ {
		switch round % 5 {
		case 0, 1, 2:
			c := soakRawClient(t, s.addrOf(UDP), fmt.Sprintf("u%d", round%7))
			if err := c.allocate(); err != nil {
				c.conn.Close()
				t.Fatalf("round %d: allocate: %v", round, err)
			}
			created++
			num := uint16(0x4000 + round%0x1000)
			if err := c.channelBind(num, peerAddr); err != nil {
				c.conn.Close()
				t.Fatalf("round %d: ChannelBind: %v", round, err)
			}
			for i := 0; i < 4; i++ {
				out := payload(round, i, 100)
				if err := c.sendChannelData(num, out, false); err != nil {
					t.Fatal(err)
				}
				_, back, err := c.recvChannelData()
				if err != nil || !bytes.Equal(back, out) {
					c.conn.Close()
					t.Fatalf("round %d: echo %d: %v", round, i, err)
				}
			}
			switch round % 5 {
			case 0:
				if err := c.refresh(0); err != nil {
					t.Fatalf("round %d: Refresh 0: %v", round, err)
				}
				deleted++
			case 1:
				if err := c.refresh(time.Second); err != nil {
					t.Fatalf("round %d: Refresh: %v", round, err)
				}
				refreshed++
			default:
				expired++
			}
			if round%5 == 0 {
				c.conn.Close()
			} else {
				lingering = append(lingering, held{c.conn, time.Now().Add(3 * time.Second)})
			}
			closeLingering(time.Now())
		default:
			n, r := TCP, (*x509.CertPool)(nil)
			if round%5 == 4 {
				n, r = TLS, roots
			}
			c, done := soakStreamClient(t, s.addrOf(n), r, fmt.Sprintf("s%d", round%3))
			relay, err := c.Allocate()
			if err != nil {
				done()
				t.Fatalf("round %d: allocate over %s: %v", round, n, err)
			}
			created++
			streams++
			buf := make([]byte, 256)
			for i := 0; i < 2; i++ {
				out := payload(round, i, 64)
				if _, err := relay.WriteTo(out, peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				_ = relay.SetReadDeadline(time.Now().Add(rawTimeout))
				k, _, err := relay.ReadFrom(buf)
				if err != nil || !bytes.Equal(buf[:k], out) {
					done()
					t.Fatalf("round %d: echo over %s: %v", round, n, err)
				}
			}
			relay.Close()
			done()
		}
	}
	t.Logf("%v of churn: %d allocations (%d Refresh 0, %d refreshed then expired, %d expired, %d over TCP/TLS)",
		*soakFor, created, deleted, refreshed, expired, streams)
	if created < 10 {
		t.Fatalf("only %d allocations in %v", created, *soakFor)
	}
	if st := s.Stats(); st.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets == 0 {
		t.Fatal("no channel traffic during the churn")
	}

	closeLingering(time.Time{})
	// Lifetimes are a second: everything has ended a few seconds later.
	end := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !noAllocations(s) || s.Stats().Permissions != 0 || s.Stats().Channels != 0 {
		if time.Now().After(end) {
			st := s.Stats()
			t.Fatalf("5s after the churn: allocations %v, permissions %d, channels %d, ports held %d",
				st.Allocations, st.Permissions, st.Channels, st.Ports.Held)
		}
		<-tick.C
	}
	back := settleTo(t, base)
	t.Logf("baseline %+v, after %+v", base, back)
	// Heap: the churn may leave caches and pools warm, not a per-allocation residue.
	if limit := 2*base.heap + 16<<20; back.heap > limit {
		t.Errorf("heap %d bytes after the churn, baseline %d (limit %d)", back.heap, base.heap, limit)
	}
}

// settle waits for the goroutine and file counts to stop changing (connections of the
// warm-up finish closing) and returns them.
func settle(t *testing.T) resources {
	t.Helper()
	prev := measure(t)
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond) // polling interval
		cur := measure(t)
		if cur.goroutines == prev.goroutines && cur.fds == prev.fds {
			return cur
		}
		prev = cur
	}
	return prev
}

// settleTo polls until goroutines and open files are back to base, or fails after 5 s.
func settleTo(t *testing.T, base resources) resources {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for {
		cur := measure(t)
		if cur.goroutines <= base.goroutines && cur.fds <= base.fds {
			return cur
		}
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("5s after the last allocation ended: %d goroutines (baseline %d), %d open files (baseline %d)\n%s",
				cur.goroutines, base.goroutines, cur.fds, base.fds, buf[:n])
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}
