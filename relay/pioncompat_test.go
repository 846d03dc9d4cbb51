//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/relay/internal/dataplane"
)

// These tests drive a plain pion/turn server, not the relay, and check the pion behaviour
// listed in pioncompat.go. If one fails after a pion upgrade, the relay's workaround for it
// must be revisited (removed, or adapted), not the test.

const compatRealm = "avedge"

// compatUsers are the static users of the plain pion server, by name: their passwords.
var compatUsers = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// recordingConn is the PacketConn the plain pion server reads from: it logs every message
// read (with the username it carries) and every answer written.
type recordingConn struct {
	net.PacketConn
	log *compatLog
}

type compatLog struct {
	mu     sync.Mutex
	events []compatEvent
}

type compatEvent struct {
	what string // "read", "auth" or "write"
	user string // read, auth: the USERNAME
	addr string // read: the source ReadFrom returned; auth: SrcAddr; write: the destination
	msg  []byte // write: the answer
}

func (l *compatLog) add(e compatEvent) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *compatLog) snapshot() []compatEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]compatEvent(nil), l.events...)
}

func (c recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err == nil {
		m := &stun.Message{Raw: append([]byte(nil), b[:n]...)}
		var u stun.Username
		if m.Decode() == nil && u.GetFrom(m) == nil {
			c.log.add(compatEvent{what: "read", user: u.String(), addr: addr.String()})
		}
	}
	return n, addr, err
}

func (c recordingConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.log.add(compatEvent{what: "write", addr: addr.String(), msg: append([]byte(nil), b...)})
	return c.PacketConn.WriteTo(b, addr)
}

// startPlainPion runs pion/turn v5 on loopback UDP with the static users, the given
// permission handler (nil: allow every peer), and a log of what it read, authenticated and
// wrote.
func startPlainPion(t *testing.T, permit func(net.Addr, net.IP) bool) (string, *compatLog) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &compatLog{}
	if permit == nil {
		permit = func(net.Addr, net.IP) bool { return true }
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: compatRealm,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			log.add(compatEvent{what: "auth", user: ra.Username, addr: ra.SrcAddr.String()})
			pw, ok := compatUsers[ra.Username]
			return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, pw), ok
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            recordingConn{PacketConn: pc, log: log},
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"},
			PermissionHandler:     permit,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return pc.LocalAddr().String(), log
}

// pioncompat.go, 1: pion answers a ChannelBind refused by the PermissionHandler with 401
// carrying MESSAGE-INTEGRITY (not 403), after calling the AuthHandler for it with the address
// it then writes the answer to. fixChannelBindRefusal turns exactly that answer into 403.
func TestPionRefusesChannelBindWith401(t *testing.T) {
	addr, log := startPlainPion(t, func(net.Addr, net.IP) bool { return false })
	c := dialRaw(t, addr, "alice", compatUsers["alice"])
	if err := c.allocate(); err != nil {
		t.Fatal(err)
	}
	err := c.channelBind(0x4000, netip.MustParseAddrPort("127.0.0.1:9"))
	var se *stunError
	if !errors.As(err, &se) {
		t.Fatalf("refused ChannelBind: %v, want an error response", err)
	}
	if se.code != stun.CodeUnauthorized || !se.msg.Contains(stun.AttrMessageIntegrity) {
		t.Fatalf("pion answers a refused ChannelBind with %d (MESSAGE-INTEGRITY %v); the relay's 403 rewrite expects 401 with it",
			se.code, se.msg.Contains(stun.AttrMessageIntegrity))
	}
	if stunErrorCode(se.msg.Raw) != int(stun.CodeUnauthorized) || !isChannelBindError(se.msg.Raw) {
		t.Fatal("the relay's byte-level checks do not recognise pion's answer")
	}
	client := c.conn.LocalAddr().String()
	authed := -1
	for i, e := range log.snapshot() {
		switch {
		case e.what == "auth" && e.addr == client:
			authed = i
		case e.what == "write" && isChannelBindError(e.msg):
			if authed < 0 || e.addr != client {
				t.Fatalf("pion wrote the ChannelBind answer to %s without authenticating %s first", e.addr, client)
			}
			return
		}
	}
	t.Fatal("no ChannelBind error answer written")
}

func isChannelBindError(b []byte) bool {
	var mt stun.MessageType
	mt.ReadValue(uint16(b[0])<<8 | uint16(b[1]))
	return mt.Method == stun.MethodChannelBind && mt.Class == stun.ClassErrorResponse
}

// pioncompat.go, 2: pion authenticates a message after reading it and before reading the
// next, with SrcAddr the address ReadFrom returned, even when the next one is already waiting.
func TestPionAuthenticatesInReadOrder(t *testing.T) {
	addr, log := startPlainPion(t, nil)
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	var clients []*rawClient
	var reqs [][]byte
	for _, user := range []string{"alice", "bob"} {
		c := dialRaw(t, addr, user, compatUsers[user])
		// The unauthenticated Allocate's 401 gives the realm and nonce.
		_, err := c.transact(allocate, requestedTransportUDP)
		var se *stunError
		if !errors.As(err, &se) || se.code != stun.CodeUnauthorized {
			t.Fatalf("%s: allocate without credentials: %v, want 401", user, err)
		}
		if err := c.nonce.GetFrom(se.msg); err != nil {
			t.Fatal(err)
		}
		if err := c.realm.GetFrom(se.msg); err != nil {
			t.Fatal(err)
		}
		m, err := stun.Build(stun.TransactionID, allocate, requestedTransportUDP, stun.NewUsername(user), c.realm, c.nonce,
			stun.NewLongTermIntegrity(user, c.realm.String(), c.password), stun.Fingerprint)
		if err != nil {
			t.Fatal(err)
		}
		clients, reqs = append(clients, c), append(reqs, m.Raw)
	}
	// Both requests are queued on pion's socket before it reads the first.
	for i, c := range clients {
		if _, err := c.conn.WriteToUDP(reqs[i], c.server); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
		if _, _, err := c.conn.ReadFromUDP(make([]byte, 2048)); err != nil {
			t.Fatalf("no answer to the authenticated Allocate: %v", err)
		}
	}
	var seq []compatEvent
	for _, e := range log.snapshot() {
		if (e.what == "read" || e.what == "auth") && e.user != "" {
			seq = append(seq, e)
		}
	}
	if len(seq) != 4 {
		t.Fatalf("events %+v: want read and auth of each authenticated request", seq)
	}
	for i := 0; i < 4; i += 2 {
		r, a := seq[i], seq[i+1]
		if r.what != "read" || a.what != "auth" || r.user != a.user || r.addr != a.addr {
			t.Fatalf("events %+v: want each read followed by the AuthHandler call for it, with the same address", seq)
		}
	}
}

// pioncompat.go, 3: pion grants a requested LIFETIME shorter than an hour as asked, and
// answers one of an hour or more with the default lifetime: never more than an hour while the
// default is at most that.
func TestPionCapsRequestedLifetime(t *testing.T) {
	addr, _ := startPlainPion(t, nil)
	c := dialRaw(t, addr, "alice", compatUsers["alice"])
	lifetime := func(d time.Duration) stun.Setter {
		v := make([]byte, 4)
		binary.BigEndian.PutUint32(v, uint32(d/time.Second))
		return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
	}
	granted := func(res *stun.Message) time.Duration {
		v, err := res.Get(stun.AttrLifetime)
		if err != nil || len(v) != 4 {
			t.Fatalf("response without LIFETIME: % x, %v", v, err)
		}
		return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	if err := c.allocate(lifetime(50 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := granted(c.allocResp); got != 50*time.Minute {
		t.Fatalf("pion granted %v for a requested 50m, want it as asked", got)
	}
	res, err := c.authed(stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetime(5*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := granted(res); got <= 0 || got > time.Hour {
		t.Fatalf("pion granted %v for a requested 5h; Config.AllocationLifetime's doc says at most one hour", got)
	}
}

// pioncompat.go, 4: pion's 401 carries a NONCE of at most nonceLen characters and no
// MESSAGE-INTEGRITY; pion accepts its nonce left-padded with '0' to nonceLen, and answers a
// NONCE of '-' characters with 438 (Stale Nonce) before it asks the AuthHandler.
func TestPionNonceShape(t *testing.T) {
	addr, log := startPlainPion(t, nil)
	c := dialRaw(t, addr, "alice", compatUsers["alice"])
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	_, err := c.transact(allocate, requestedTransportUDP)
	var se *stunError
	if !errors.As(err, &se) || se.code != stun.CodeUnauthorized {
		t.Fatalf("allocate without credentials: %v, want 401", err)
	}
	if se.msg.Contains(stun.AttrMessageIntegrity) {
		t.Fatal("pion's 401 carries MESSAGE-INTEGRITY")
	}
	if err := c.nonce.GetFrom(se.msg); err != nil || len(c.nonce) == 0 || len(c.nonce) > nonceLen {
		t.Fatalf("pion's NONCE %q (%v): want 1 to %d characters", c.nonce, err, nonceLen)
	}
	if err := c.realm.GetFrom(se.msg); err != nil {
		t.Fatal(err)
	}
	c.integrity = stun.NewLongTermIntegrity(c.username, c.realm.String(), c.password)

	spoiled := stun.NewNonce(strings.Repeat("-", nonceLen))
	_, err = c.authedWith(spoiled, allocate, requestedTransportUDP)
	if !errors.As(err, &se) || se.code != stun.CodeStaleNonce {
		t.Fatalf("NONCE of '-': %v, want 438", err)
	}
	if se.msg.Contains(stun.AttrMessageIntegrity) || !se.msg.Contains(stun.AttrNonce) {
		t.Fatal("pion's 438 carries MESSAGE-INTEGRITY or lacks NONCE")
	}
	for _, e := range log.snapshot() {
		if e.what == "auth" {
			t.Fatal("pion asked the AuthHandler about a request with a NONCE it refused")
		}
	}
	padded := stun.NewNonce(strings.Repeat("0", nonceLen-len(c.nonce)) + string(c.nonce))
	if _, err := c.authedWith(padded, allocate, requestedTransportUDP); err != nil {
		t.Fatalf("pion refused its own nonce left-padded with '0': %v", err)
	}
}

// The data plane counts Binding requests by their type without importing pion.
func TestBindingRequestTypeIsPions(t *testing.T) {
	if dataplane.BindingRequest != stun.BindingRequest.Value() {
		t.Fatalf("dataplane.BindingRequest = %#04x, pion/stun's is %#04x", dataplane.BindingRequest, stun.BindingRequest.Value())
	}
}

// compatAuth is the AuthHandler of the compat tests' pion servers: compatUsers' long-term
// credentials.
func compatAuth(ra *turn.RequestAttributes) (string, []byte, bool) {
	pw, ok := compatUsers[ra.Username]
	return ra.Username, turn.GenerateAuthKey(ra.Username, ra.Realm, pw), ok
}

// allocateAlice allocates as alice, a pion client, on the pion server listening on pc.
func allocateAlice(t *testing.T, pc net.PacketConn) net.PacketConn {
	t.Helper()
	c := newClientWith(t, pc.LocalAddr().String(), "udp4", "127.0.0.1:0", "alice", compatUsers["alice"])
	relayed, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	return relayed
}
