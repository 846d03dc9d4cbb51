//go:build linux

package relay

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// endableGen is pion's static relay address generator, with relay sockets whose ReadFrom
// fails once end is closed (what relayConn.end does).
type endableGen struct {
	turn.RelayAddressGeneratorStatic
	end    chan struct{}
	closed chan struct{} // closed when pion closes the relay socket
	once   sync.Once
}

type endableConn struct {
	net.PacketConn
	g *endableGen
}

func (g *endableGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	return endableConn{PacketConn: pc, g: g}, addr, nil
}

func (c endableConn) ReadFrom(b []byte) (int, net.Addr, error) {
	type result struct {
		n    int
		addr net.Addr
		err  error
	}
	for {
		select {
		case <-c.g.end:
			return 0, nil, net.ErrClosed
		default:
		}
		_ = c.PacketConn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, addr, err := c.PacketConn.ReadFrom(b)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		return n, addr, err
	}
}

func (c endableConn) Close() error {
	c.g.once.Do(func() { close(c.g.closed) })
	return c.PacketConn.Close()
}

// pioncompat.go, 6: when an allocation's relay PacketConn fails a read, pion deletes the
// allocation as its lifetime timer does (DeleteAllocation: the socket closed, the
// EventHandler told), and the client's next Refresh finds no allocation. The admin API ends
// an allocation that way (relayConn.end).
func TestPionDeletesAllocationWhoseRelayReadFails(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gen := &endableGen{RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"},
		end: make(chan struct{}), closed: make(chan struct{})}
	deleted := make(chan string, 1)
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:             compatRealm,
		AuthHandler:       compatAuth,
		EventHandler:      turn.EventHandler{OnAllocationDeleted: func(_, _ net.Addr, _, user, _ string) { deleted <- user }},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: gen}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	relayed := allocateAlice(t, pc)
	defer relayed.Close()
	if n := srv.AllocationCount(); n != 1 {
		t.Fatalf("%d allocations, want 1", n)
	}
	close(gen.end)
	select {
	case user := <-deleted:
		if user != "alice" {
			t.Errorf("OnAllocationDeleted for %q", user)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pion did not delete the allocation whose relay read failed")
	}
	select {
	case <-gen.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("pion did not close the relay socket")
	}
	if n := srv.AllocationCount(); n != 0 {
		t.Errorf("%d allocations after the failed read, want 0", n)
	}
}

// pioncompat.go, 8: pion leaves a Refresh with valid credentials from a 5-tuple that has no
// allocation unanswered (RFC 8656 §7.3 asks for 437), so the relay answers it for the
// allocations it ended (mismatch.go). pion handles a listener's requests in order, so a
// Binding request sent behind the Refresh is answered after the Refresh was handled.
func TestPionLeavesRefreshWithoutAllocationUnanswered(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:       compatRealm,
		AuthHandler: compatAuth,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
			RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	c := dialRaw(t, pc.LocalAddr().String(), "alice", compatUsers["alice"])
	refresh := stun.NewType(stun.MethodRefresh, stun.ClassRequest)
	_, err = c.transact(refresh) // unsigned: the 401 brings the nonce
	var se *stunError
	if !errors.As(err, &se) || se.code != stun.CodeUnauthorized || c.nonce.GetFrom(se.msg) != nil || c.realm.GetFrom(se.msg) != nil {
		t.Fatalf("unsigned Refresh: %v, want 401 with a nonce", err)
	}
	c.integrity = stun.NewLongTermIntegrity(c.username, c.realm.String(), c.password)
	req := stun.MustBuild(stun.TransactionID, refresh, stun.NewUsername(c.username), c.realm, c.nonce, c.integrity, stun.Fingerprint)
	bind := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	for _, m := range []*stun.Message{req, bind} {
		if _, err := c.conn.WriteToUDP(m.Raw, c.server); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	for i := 0; ; i++ {
		n, _, err := c.conn.ReadFromUDP(buf)
		if err != nil || i > 100 {
			t.Fatalf("no Binding answer: %v", err)
		}
		m := &stun.Message{Raw: buf[:n]}
		if m.Decode() != nil {
			continue
		}
		if m.TransactionID == req.TransactionID {
			t.Fatalf("pion answered the Refresh without allocation (%v): mismatch.go's 437 may no longer be needed", m.Type)
		}
		if m.TransactionID == bind.TransactionID {
			return
		}
	}
}
