package loadgen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// Flood stops at its count, spreads its datagrams over its sources, sends Binding and
// Allocate requests in the asked mix, and signs the Allocates with the realm and nonce the
// server gave.
func TestFloodBoundedAndMixed(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_ = srv.SetReadBuffer(1 << 20)
	const count, sources = 64, 8
	done := make(chan map[netip.Addr]int, 1)
	go func() {
		seen := map[netip.Addr]int{}
		var allocs, bindings int
		buf := make([]byte, 2048)
		for allocs+bindings < count {
			_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil {
				continue
			}
			if m.Type.Method == stun.MethodAllocate && !m.Contains(stun.AttrMessageIntegrity) {
				// The nonce request: answer 401 with REALM and NONCE.
				res, _ := stun.Build(&stun.Message{TransactionID: m.TransactionID},
					stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
					&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewRealm("r"), stun.NewNonce("n"))
				_, _ = srv.WriteToUDPAddrPort(res.Raw, from)
				continue
			}
			var nonce stun.Nonce
			switch {
			case m.Type == stun.BindingRequest:
				bindings++
			case m.Type.Method == stun.MethodAllocate && nonce.GetFrom(m) == nil && nonce.String() == "n":
				allocs++
			default:
				continue
			}
			seen[from.Addr()]++
		}
		seen[netip.Addr{}] = allocs
		done <- seen
	}()
	rep, err := Flood(context.Background(), FloodConfig{
		Server:  srv.LocalAddr().(*net.UDPAddr).AddrPort(),
		Sources: sources, SourceBase: netip.MustParseAddr("127.3.0.1"), Count: count, AllocateEvery: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != count || rep.Allocates != count/4 || rep.Bindings != count-count/4 {
		t.Fatalf("report %+v: want %d sent, a quarter of them Allocates", rep, count)
	}
	seen := <-done
	if seen[netip.Addr{}] != count/4 {
		t.Fatalf("server saw %d signed Allocates, want %d", seen[netip.Addr{}], count/4)
	}
	delete(seen, netip.Addr{})
	if len(seen) != sources {
		t.Fatalf("datagrams from %d sources, want %d", len(seen), sources)
	}
	for a, n := range seen {
		if !netip.MustParsePrefix("127.3.0.0/24").Contains(a) || n != count/sources {
			t.Fatalf("%d datagrams from %v, want %d from each of 127.3.0.1..", n, a, count/sources)
		}
	}
}

func TestFloodConfigBounds(t *testing.T) {
	server := netip.MustParseAddrPort("127.0.0.1:3478")
	for _, c := range []FloodConfig{
		{},
		{Server: server, Sources: MaxFloodSources + 1},
		{Server: server, Count: MaxFloodCount + 1},
		{Server: server, Duration: MaxFloodDuration + 1},
		{Server: server, Rate: -1},
	} {
		if _, err := Flood(context.Background(), c); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: err %v, want ErrBadConfig", c, err)
		}
	}
}
