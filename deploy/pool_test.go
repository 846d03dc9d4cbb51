//go:build linux

package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/relay"
)

const poolAPIKey = "pool-test-api-key"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startPoolRelay runs one relay of the pool on loopback: UDP listener on an ephemeral port,
// relay ports from [min, max] (below Linux's ephemeral range, distinct per relay).
func startPoolRelay(t *testing.T, v *auth.Validator, min, max uint16, alternate netip.AddrPort) (*relay.Server, string) {
	t.Helper()
	s, err := relay.New(relay.Config{
		AlternateServer: alternate,
		Listeners:       []relay.ListenerConfig{{Network: relay.UDP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}},
		RelayIPs:        []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		MinPort:         min, MaxPort: max,
		Validator: v,
		Peers:     relay.PeerPolicy{AllowLoopback: true},
		Workers:   1,
		DataPath:  relay.DataPathEpoll, // auto would attach the kernel fast path to this namespace's lo
		Logger:    quietLogger(),
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addrs()[0].Addr.String()
}

// fetchCredentials asks the credential service for a credential, as an application would.
func fetchCredentials(t *testing.T, url string) auth.JSONCredentials {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/credentials?username=alice%40example.com&ttl=600", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+poolAPIKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("credential service: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("credential service: %s: %s", res.Status, b)
	}
	var c auth.JSONCredentials
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		t.Fatalf("credential service answer: %v", err)
	}
	return c
}

// udpRelays returns the host:port of every "turn:host:port?transport=udp" URI, in order.
func udpRelays(t *testing.T, uris []string) []string {
	t.Helper()
	var out []string
	for _, u := range uris {
		rest, ok := strings.CutPrefix(u, "turn:")
		if !ok {
			t.Fatalf("URI %q is not a turn: URI", u)
		}
		if hp, ok := strings.CutSuffix(rest, "?transport=udp"); ok {
			out = append(out, hp)
		}
	}
	return out
}

func turnClient(t *testing.T, server, username, password string) *turn.Client {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server, TURNServerAddr: server,
		Conn: pc, Username: username, Password: password,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	return c
}

// roundTrip sends msg through conn to peer and waits for its echo, resending while pion's
// client sets up the permission (the first packets may arrive before it exists).
func roundTrip(t *testing.T, conn net.PacketConn, peer net.Addr, msg []byte) {
	t.Helper()
	buf := make([]byte, 2048)
	for try := 0; try < 10; try++ {
		if _, err := conn.WriteTo(msg, peer); err != nil {
			t.Fatalf("write through relay: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			return
		}
	}
	t.Fatalf("no echo of %q from %v", msg, peer)
}

// flow is a call in progress: it sends packet after packet through conn and waits for each
// echo, so a single lost packet ends it with an error.
type flow struct {
	echoed     atomic.Int64
	afterDrain atomic.Int64
	drained    atomic.Bool
	stop       chan struct{}
	stopOnce   sync.Once
	done       chan struct{}
	err        error // set before done closes
}

// halt stops the flow and waits for its goroutine; safe to call more than once.
func (f *flow) halt() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}

func startFlow(conn net.PacketConn, peer net.Addr) *flow {
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		buf := make([]byte, 2048)
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; i < 200000 && time.Now().Before(deadline); i++ {
			select {
			case <-f.stop:
				return
			default:
			}
			msg := fmt.Appendf(nil, "live call packet %d", i)
			if _, err := conn.WriteTo(msg, peer); err != nil {
				f.err = fmt.Errorf("packet %d: write: %w", i, err)
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				f.err = fmt.Errorf("packet %d lost (%d echoed, %d after drain): %w", i, f.echoed.Load(), f.afterDrain.Load(), err)
				return
			}
			if !bytes.Equal(buf[:n], msg) {
				f.err = fmt.Errorf("packet %d: echo %q, want %q", i, buf[:n], msg)
				return
			}
			f.echoed.Add(1)
			if f.drained.Load() {
				f.afterDrain.Add(1)
			}
		}
		f.err = errors.New("flow ran out of its packet or time budget before it was stopped")
	}()
	return f
}

// waitFor blocks until cond holds or the flow ends, whichever comes first (the flow's own
// budget bounds the wait).
func (f *flow) waitFor(cond func() bool) bool {
	for !cond() {
		select {
		case <-f.done:
			return cond()
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// rawAllocate sends one unauthenticated Allocate request (REQUESTED-TRANSPORT UDP) to server
// and returns the answer.
func rawAllocate(t *testing.T, server string) *stun.Message {
	t.Helper()
	conn, err := net.Dial("udp4", server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}, stun.Fingerprint)
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			continue
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := res.Decode(); err != nil {
			t.Fatalf("answer to Allocate: %v", err)
		}
		if res.TransactionID == req.TransactionID {
			return res
		}
	}
	t.Fatalf("no answer to Allocate from %s", server)
	return nil
}

func TestPoolDrainMovesNewAllocations(t *testing.T) {
	for _, tc := range []struct {
		name      string
		alternate bool // A names B in ALTERNATE-SERVER while it drains
	}{
		{"draining relay answers 508", false},
		{"draining relay answers 300 Try Alternate naming the other", true},
	} {
		t.Run(tc.name, func(t *testing.T) { testPoolDrain(t, tc.alternate) })
	}
}

func testPoolDrain(t *testing.T, alternate bool) {
	// One shared key: what the Secret holds for every relay and the credential service.
	keyring := auth.NewKeyring(auth.Secret{ID: "k1", Value: []byte("pool-shared-secret-0123456789")})
	validator := auth.NewValidator(auth.ValidatorConfig{Keyring: keyring, Skew: 30 * time.Second})
	relayB, addrB := startPoolRelay(t, validator, 17000, 17999, netip.AddrPort{})
	var alt netip.AddrPort
	if alternate {
		alt = netip.MustParseAddrPort(addrB)
	}
	relayA, addrA := startPoolRelay(t, validator, 16000, 16999, alt)

	relayInfo := func(addr string) auth.RelayInfo {
		ap := netip.MustParseAddrPort(addr)
		return auth.RelayInfo{Location: auth.LocationInternet, HostName: ap.Addr().String(), UDPPort: int(ap.Port())}
	}
	svc, err := auth.NewService(auth.ServiceConfig{
		Keyring: keyring,
		Relays:  []auth.RelayInfo{relayInfo(addrA), relayInfo(addrB)},
		APIKeys: []string{poolAPIKey},
		Logger:  quietLogger(),
	})
	if err != nil {
		t.Fatalf("auth.NewService: %v", err)
	}
	hs := httptest.NewServer(svc)
	t.Cleanup(hs.Close)

	cred := fetchCredentials(t, hs.URL)
	pool := udpRelays(t, cred.URIs)
	if len(pool) != 2 || pool[0] != addrA || pool[1] != addrB {
		t.Fatalf("relay list %v, want [%s %s]", pool, addrA, addrB)
	}
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")

	// The same credential allocates on both relays of the list.
	conns := make([]net.PacketConn, len(pool))
	for i, addr := range pool {
		c := turnClient(t, addr, cred.Username, cred.Password)
		conn, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate on %s with the service's credential: %v", addr, err)
		}
		t.Cleanup(func() { conn.Close() })
		roundTrip(t, conn, peer.LocalAddr(), []byte("hello through "+addr))
		conns[i] = conn
	}

	// A call in progress on relay A.
	call := startFlow(conns[0], peer.LocalAddr())
	defer call.halt()
	if !call.waitFor(func() bool { return call.echoed.Load() >= 20 }) {
		t.Fatalf("the call on A did not get going: %v", call.err)
	}

	relayA.Drain()
	call.drained.Store(true)

	t.Run("A reports not ready", func(t *testing.T) {
		if ok, why := relayA.Ready(); ok || why != "draining" {
			t.Errorf("A.Ready() = %v, %q; want false, draining", ok, why)
		}
		if ok, _ := relayB.Ready(); !ok {
			t.Error("B is not ready")
		}
	})

	t.Run("new allocation on A refused", func(t *testing.T) {
		if alternate {
			res := rawAllocate(t, addrA)
			var code stun.ErrorCodeAttribute
			var as stun.AlternateServer
			if err := code.GetFrom(res); err != nil || code.Code != stun.CodeTryAlternate {
				t.Fatalf("Allocate on draining A: %v (%v), want error 300 (Try Alternate)", res, err)
			}
			if err := as.GetFrom(res); err != nil || net.JoinHostPort(as.IP.String(), strconv.Itoa(as.Port)) != addrB {
				t.Fatalf("ALTERNATE-SERVER %v:%d (%v), want B at %s", as.IP, as.Port, err, addrB)
			}
			return
		}
		c := turnClient(t, addrA, cred.Username, cred.Password)
		conn, err := c.Allocate()
		if err == nil {
			conn.Close()
			t.Fatal("a draining relay granted a new allocation")
		}
		var te *stun.TurnError
		if !errors.As(err, &te) || te.ErrorCodeAttr.Code != stun.CodeInsufficientCapacity {
			t.Fatalf("allocate on draining A: %v, want error 508 (Insufficient Capacity)", err)
		}
	})

	t.Run("new allocation on B", func(t *testing.T) {
		c := turnClient(t, addrB, cred.Username, cred.Password)
		conn, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate on B while A drains: %v", err)
		}
		defer conn.Close()
		roundTrip(t, conn, peer.LocalAddr(), []byte("new call on B"))
		roundTrip(t, conns[1], peer.LocalAddr(), []byte("old call on B"))
	})

	t.Run("live allocation on A keeps flowing", func(t *testing.T) {
		if !call.waitFor(func() bool { return call.afterDrain.Load() >= 200 }) {
			t.Fatalf("after the drain: %d packets echoed, then: %v", call.afterDrain.Load(), call.err)
		}
		call.halt()
		if call.err != nil {
			t.Fatalf("live call on A: %v", call.err)
		}
		t.Logf("live call on A: %d packets echoed, %d of them after the drain, none lost", call.echoed.Load(), call.afterDrain.Load())
	})
}
