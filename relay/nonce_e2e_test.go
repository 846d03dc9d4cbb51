//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
)

// authedWith sends one authenticated request with the given NONCE (no retry on 438).
func (c *rawClient) authedWith(nonce stun.Nonce, t stun.MessageType, setters ...stun.Setter) (*stun.Message, error) {
	all := append([]stun.Setter{t}, setters...)
	all = append(all, stun.NewUsername(c.username), c.realm, nonce, c.integrity, stun.Fingerprint)
	return c.transact(all...)
}

// staleNonce checks that err is a 438 carrying a NONCE other than old, and returns it.
func staleNonce(t *testing.T, what string, err error, old stun.Nonce) stun.Nonce {
	t.Helper()
	var se *stunError
	if !errors.As(err, &se) || se.code != stun.CodeStaleNonce {
		t.Fatalf("%s: %v, want 438 Stale Nonce", what, err)
	}
	var n stun.Nonce
	if err := n.GetFrom(se.msg); err != nil {
		t.Fatalf("%s: 438 without NONCE: %v", what, err)
	}
	if string(n) == string(old) {
		t.Fatalf("%s: 438 repeats the refused nonce", what)
	}
	return n
}

// A nonce is bound to the 5-tuple it was issued to (RFC 8489 §9.2): a credential holder who
// takes one from its own address and sends Allocate, CreatePermission or ChannelBind from
// another (a spoofed victim: here another port, and another loopback address) gets 438, and
// nothing is created; the nonce still works from its own address, and a client that moved
// recovers with the nonce the 438 carries.
func TestNonceBoundToFiveTuple(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) { c.Metrics = m })
	username, password := auth.MintREST(testSecret, "mallory", time.Now().Add(time.Hour))
	attacker := dialRaw(t, s.addrOf(UDP), username, password)
	if err := attacker.allocate(); err != nil {
		t.Fatalf("attacker's own allocation: %v", err)
	}
	taken := attacker.nonce
	peer := newUDPPeer(t, "127.0.0.1:0")
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	createPermission := stun.NewType(stun.MethodCreatePermission, stun.ClassRequest)
	channelBind := stun.NewType(stun.MethodChannelBind, stun.ClassRequest)
	chanNum := func(n uint16) stun.Setter {
		v := make([]byte, 4)
		binary.BigEndian.PutUint16(v, n)
		return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}
	}

	refused := 0 // 438s received
	for _, local := range []string{"127.0.0.1:0", "127.0.0.2:0"} {
		t.Run("from "+local, func(t *testing.T) {
			victim := newUDPPeer(t, local) // skips if 127.0.0.2 is not usable
			spoofed := &rawClient{conn: victim.conn, server: attacker.server, username: username, password: password,
				realm: attacker.realm, integrity: attacker.integrity}
			before := s.Stats()

			_, err := spoofed.authedWith(taken, allocate, requestedTransportUDP)
			fresh := staleNonce(t, "Allocate with a nonce of another 5-tuple", err, taken)
			refused++
			if st := s.Stats(); st.Ports.Held != before.Ports.Held {
				t.Fatalf("an allocation was created: ports held %d → %d", before.Ports.Held, st.Ports.Held)
			}
			// The 438's nonce is the victim's own: with it, an allocation for this 5-tuple is
			// made (the honest client that moved, recovering after one 438).
			spoofed.nonce = fresh
			if _, err := spoofed.authedWith(fresh, allocate, requestedTransportUDP); err != nil {
				t.Fatalf("Allocate with the nonce the 438 gave: %v", err)
			}
			// With the allocation in place, the attacker's nonce still buys no permission
			// and no channel for this 5-tuple.
			_, err = spoofed.authedWith(taken, createPermission, peerAttr(peer.addr()))
			staleNonce(t, "CreatePermission with a nonce of another 5-tuple", err, taken)
			refused++
			_, err = spoofed.authedWith(taken, channelBind, chanNum(0x4001), peerAttr(peer.addr()))
			staleNonce(t, "ChannelBind with a nonce of another 5-tuple", err, taken)
			refused++
			if st := s.Stats(); st.Permissions != before.Permissions || st.Channels != before.Channels {
				t.Fatalf("permissions %d → %d, channels %d → %d: created with a foreign nonce",
					before.Permissions, st.Permissions, before.Channels, st.Channels)
			}
			if _, err := spoofed.authedWith(fresh, channelBind, chanNum(0x4001), peerAttr(peer.addr())); err != nil {
				t.Fatalf("ChannelBind with its own nonce: %v", err)
			}
			if err := spoofed.refresh(0); err != nil {
				t.Fatalf("Refresh 0: %v", err)
			}
		})
	}
	// Each refusal is counted.
	if got, want := authFailures(t, reg, metrics.AuthStaleNonce), float64(refused); got != want {
		t.Fatalf("stale_nonce counted %v times, want %v", got, want)
	}
	// The attacker's nonce works from its own 5-tuple.
	if _, err := attacker.authedWith(taken, createPermission, peerAttr(peer.addr())); err != nil {
		t.Fatalf("CreatePermission from the nonce's own 5-tuple: %v", err)
	}
}

// streamConn speaks STUN over one TCP connection, one message at a time.
type streamConn struct {
	conn net.Conn
}

func dialStream(t *testing.T, server, local string) *streamConn {
	t.Helper()
	la, err := net.ResolveTCPAddr("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: la}
	conn, err := d.Dial("tcp", server)
	if err != nil {
		t.Skipf("dial %s from %s: %v", server, local, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &streamConn{conn: conn}
}

// transact writes a request and reads the next message; it returns the answer and its error
// code (0 for a success).
func (c *streamConn) transact(setters ...stun.Setter) (*stun.Message, stun.ErrorCode, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, 0, err
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		return nil, 0, err
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		return nil, 0, fmt.Errorf("read answer: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return nil, 0, fmt.Errorf("read answer: %w", err)
	}
	m := &stun.Message{Raw: append(hdr, body...)}
	if err := m.Decode(); err != nil {
		return nil, 0, err
	}
	var ec stun.ErrorCodeAttribute
	if m.Type.Class == stun.ClassErrorResponse {
		if err := ec.GetFrom(m); err != nil {
			return nil, 0, err
		}
	}
	return m, ec.Code, nil
}

// The same over TCP: a nonce from one connection is refused (438) on another, from another
// port or another address, and on UDP from the same address; on its own connection it works.
func TestNonceBoundToStream(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "mallory", time.Now().Add(time.Hour))
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	tcp := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

	first := dialStream(t, s.addrOf(TCP), "127.0.0.1:0")
	res, code, err := first.transact(allocate, tcp)
	if err != nil || code != stun.CodeUnauthorized {
		t.Fatalf("first Allocate: code %d, %v; want 401", code, err)
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if nonce.GetFrom(res) != nil || realm.GetFrom(res) != nil {
		t.Fatal("401 without NONCE or REALM")
	}
	integrity := stun.NewLongTermIntegrity(username, realm.String(), password)
	authed := func(n stun.Nonce) []stun.Setter {
		return []stun.Setter{allocate, tcp, stun.NewUsername(username), realm, n, integrity, stun.Fingerprint}
	}

	for _, local := range []string{"127.0.0.1:0", "127.0.0.2:0"} {
		other := dialStream(t, s.addrOf(TCP), local)
		held := s.Stats().Ports.Held
		res, code, err := other.transact(authed(nonce)...)
		if err != nil || code != stun.CodeStaleNonce {
			t.Fatalf("Allocate from %s with another connection's nonce: code %d, %v; want 438", other.conn.LocalAddr(), code, err)
		}
		if s.Stats().Ports.Held != held {
			t.Fatalf("an allocation was created from %s", other.conn.LocalAddr())
		}
		var fresh stun.Nonce
		if fresh.GetFrom(res) != nil {
			t.Fatal("438 without NONCE")
		}
		if _, code, err := other.transact(authed(fresh)...); err != nil || code != 0 {
			t.Fatalf("Allocate with the 438's nonce: code %d, %v", code, err)
		}
	}
	// Over UDP from the TCP connection's own address and port: another 5-tuple too.
	la := first.conn.LocalAddr().(*net.TCPAddr)
	udp := newUDPPeer(t, la.String())
	c := &rawClient{conn: udp.conn, server: netUDPAddr(t, s.addrOf(UDP)), username: username, password: password, realm: realm, integrity: integrity}
	_, err = c.authedWith(nonce, allocate, requestedTransportUDP)
	staleNonce(t, "Allocate over UDP with a TCP connection's nonce", err, nonce)

	if _, code, err := first.transact(authed(nonce)...); err != nil || code != 0 {
		t.Fatalf("Allocate on the nonce's own connection: code %d, %v", code, err)
	}
	if s.Stats().Ports.Held != 3 {
		t.Fatalf("ports held %d, want 3 allocations", s.Stats().Ports.Held)
	}
}

func netUDPAddr(t *testing.T, s string) *net.UDPAddr {
	t.Helper()
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// A nonce expires after nonceLifetime; pion's client, whose next request then carries an
// expired nonce, gets 438 with a fresh one and goes on: the permission for a new peer is
// created and data flows to it.
func TestNonceExpiryWithPionClient(t *testing.T) {
	var offset atomic.Int64 // added to the relay's nonce clock
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) {
		c.Metrics = m
		c.nonceClock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	c := newClient(t, s, "alice")
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relay.Close()
	first := testnet.Echo(t, "udp4", "127.0.0.1:0")
	roundTrip(t, relay, first.LocalAddr(), []byte("before"))
	if got := authFailures(t, reg, metrics.AuthStaleNonce); got != 0 {
		t.Fatalf("stale_nonce counted %v times before the nonce expired", got)
	}

	offset.Store(int64(nonceLifetime + time.Minute))
	// On another IP address: pion's client keeps permissions by IP, and would reach a second
	// peer on 127.0.0.1 under the first one's permission with a Send indication, leaving
	// only its ChannelBind, made in the background, to carry the expired nonce. Its
	// CreatePermission is made, and retried after the 438, before the first packet leaves.
	second := testnet.Echo(t, "udp4", "127.0.0.2:0")
	roundTrip(t, relay, second.LocalAddr(), []byte("after")) // a new permission, asked with the expired nonce
	if got := authFailures(t, reg, metrics.AuthStaleNonce); got < 1 {
		t.Fatal("no 438 counted for the expired nonce")
	}
}
