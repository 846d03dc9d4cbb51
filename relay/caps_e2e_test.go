//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
)

// capClient speaks TURN over one connected socket, UDP or TCP, one request at a time, and
// checks the MESSAGE-INTEGRITY of every answer to an authenticated request.
type capClient struct {
	t      testing.TB
	conn   net.Conn
	stream bool

	username, password string
	realm              stun.Realm
	nonce              stun.Nonce
	integrity          stun.MessageIntegrity
}

func dialCap(t testing.TB, s *Server, n Network) *capClient {
	t.Helper()
	network := "udp4"
	if n == TCP {
		network = "tcp4"
	}
	conn, err := net.Dial(network, s.addrOf(n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	username, password := auth.MintREST(testSecret, "capped", time.Now().Add(time.Hour))
	return &capClient{t: t, conn: conn, stream: n == TCP, username: username, password: password}
}

// read returns the next STUN message from the server, or an error after rawTimeout.
func (c *capClient) read() (*stun.Message, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	var b []byte
	if c.stream {
		hdr := make([]byte, stunHeaderSize)
		if _, err := io.ReadFull(c.conn, hdr); err != nil {
			return nil, err
		}
		b = make([]byte, stunHeaderSize+int(binary.BigEndian.Uint16(hdr[2:4])))
		copy(b, hdr)
		if _, err := io.ReadFull(c.conn, b[stunHeaderSize:]); err != nil {
			return nil, err
		}
	} else {
		buf := make([]byte, 2048)
		n, err := c.conn.Read(buf)
		if err != nil {
			return nil, err
		}
		b = buf[:n]
	}
	m := &stun.Message{Raw: b}
	return m, m.Decode()
}

// transact sends a request and returns its answer (success or error: the caller looks).
func (c *capClient) transact(setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		return nil, err
	}
	for i := 0; i < 100; i++ { // bounded: Data indications may come in between
		res, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", req.Type.Method, err)
		}
		if res.TransactionID == req.TransactionID {
			return res, nil
		}
	}
	return nil, fmt.Errorf("%s: no answer", req.Type.Method)
}

// code returns the ERROR-CODE of an answer, 0 for a success.
func code(m *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || ec.GetFrom(m) != nil {
		return 0
	}
	return ec.Code
}

// authed sends an authenticated request and returns the answer, whose MESSAGE-INTEGRITY
// must check with the client's key.
func (c *capClient) authed(method stun.Method, setters ...stun.Setter) stun.ErrorCode {
	c.t.Helper()
	all := append([]stun.Setter{stun.NewType(method, stun.ClassRequest)}, setters...)
	all = append(all, stun.NewUsername(c.username), c.realm, c.nonce, c.integrity, stun.Fingerprint)
	res, err := c.transact(all...)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.integrity.Check(res); err != nil {
		c.t.Fatalf("%s answer %d: MESSAGE-INTEGRITY does not check: %v", method, code(res), err)
	}
	return code(res)
}

func (c *capClient) allocate() {
	c.t.Helper()
	res, err := c.transact(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP)
	if err != nil || code(res) != stun.CodeUnauthorized {
		c.t.Fatalf("allocate without credentials: %v %v", res, err)
	}
	if c.nonce.GetFrom(res) != nil || c.realm.GetFrom(res) != nil {
		c.t.Fatal("401 without NONCE or REALM")
	}
	c.integrity = stun.NewLongTermIntegrity(c.username, c.realm.String(), c.password)
	if got := c.authed(stun.MethodAllocate, requestedTransportUDP); got != 0 {
		c.t.Fatalf("allocate: %d", got)
	}
}

func (c *capClient) createPermission(peers ...netip.AddrPort) stun.ErrorCode {
	c.t.Helper()
	var s []stun.Setter
	for _, p := range peers {
		s = append(s, peerAttr(p))
	}
	return c.authed(stun.MethodCreatePermission, s...)
}

func (c *capClient) channelBind(num uint16, peer netip.AddrPort) stun.ErrorCode {
	c.t.Helper()
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, num)
	return c.authed(stun.MethodChannelBind, stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}, peerAttr(peer))
}

// sendTo sends data to peer in a Send indication.
func (c *capClient) sendTo(peer netip.AddrPort, data []byte) {
	c.t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAttr(peer), stun.RawAttribute{Type: stun.AttrData, Value: data}, stun.Fingerprint)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(m.Raw); err != nil {
		c.t.Fatal(err)
	}
}

func loPeer(i int, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}), port)
}

func (s *Server) capRefusals(r capReason) uint64 { return s.caps.refused[r].Load() }

// TestCapsAnswer508: beyond the per-allocation caps, CreatePermission and ChannelBind are
// answered 508 with a valid MESSAGE-INTEGRITY, over UDP and TCP; a refused request installs
// nothing (a CreatePermission counts each of its peers), refreshes are never refused, and the
// permissions held keep relaying.
func TestCapsAnswer508(t *testing.T) {
	for _, n := range []Network{UDP, TCP} {
		t.Run(string(n), func(t *testing.T) {
			s := startServer(t, func(c *Config) { c.MaxPermissions, c.MaxChannels, c.PermissionRate = 3, 2, -1 })
			peer := newUDPPeer(t, "127.0.1.1:0")
			p1 := peer.addr()
			c := dialCap(t, s, n)
			c.allocate()

			// Four new peers in one request: over the cap of 3, refused whole.
			if got := c.createPermission(p1, loPeer(2, 1), loPeer(3, 1), loPeer(4, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("CreatePermission of 4 peers under a cap of 3: %d, want 508", got)
			}
			if st := s.Stats(); st.Permissions != 0 {
				t.Fatalf("a refused CreatePermission installed %d permissions", st.Permissions)
			}
			// Two, then one more (with a repeat of one held): 3 in all.
			if got := c.createPermission(p1, loPeer(2, 1)); got != 0 {
				t.Fatalf("CreatePermission of 2 peers: %d", got)
			}
			if got := c.createPermission(loPeer(3, 1), loPeer(2, 7)); got != 0 {
				t.Fatalf("CreatePermission of a third peer: %d", got)
			}
			// At the cap: a new peer is refused, alone or beside a held one; refreshes pass.
			if got := c.createPermission(loPeer(4, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("fourth permission: %d, want 508", got)
			}
			if got := c.createPermission(p1, loPeer(5, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("a held and a new peer at the cap: %d, want 508", got)
			}
			for i := 0; i < 3; i++ {
				if got := c.createPermission(p1, loPeer(2, 9), loPeer(3, 9)); got != 0 {
					t.Fatalf("refresh %d of the held permissions: %d", i, got)
				}
			}
			if got := s.capRefusals(capPermissions); got != 3 {
				t.Fatalf("%d refusals counted for the permission cap, want 3", got)
			}
			// The held permission still relays.
			c.sendTo(p1, []byte("still here"))
			if b, _, err := peer.recv(rawTimeout); err != nil || string(b) != "still here" {
				t.Fatalf("peer got %q, %v after the cap refused a permission", b, err)
			}

			// Channels: two, then the third refused; a rebind is a refresh.
			if got := c.channelBind(0x4000, p1); got != 0 {
				t.Fatalf("first channel: %d", got)
			}
			if got := c.channelBind(0x4001, loPeer(2, 1)); got != 0 {
				t.Fatalf("second channel: %d", got)
			}
			if got := c.channelBind(0x4002, loPeer(3, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("third channel under a cap of 2: %d, want 508", got)
			}
			if got := c.channelBind(0x4000, p1); got != 0 {
				t.Fatalf("rebinding a bound channel: %d", got)
			}
			// A ChannelBind to a new peer IP needs a permission too: the permission cap refuses it.
			if got := c.channelBind(0x4001, loPeer(6, 1)); got == 0 {
				t.Fatal("ChannelBind to a fourth peer IP succeeded")
			}
			if got := s.capRefusals(capChannels); got != 1 {
				t.Fatalf("%d refusals counted for the channel cap, want 1", got)
			}
			st := s.Stats()
			if st.Permissions != 3 || st.Channels != 2 {
				t.Fatalf("gauges: %d permissions, %d channels; want 3, 2", st.Permissions, st.Channels)
			}
			// The policy still answers 403, not 508, and costs no cap.
			if got := c.createPermission(netip.MustParseAddrPort("169.254.169.254:80")); got != stun.CodeForbidden {
				t.Fatalf("CreatePermission to a denied peer: %d, want 403", got)
			}
		})
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func (f *fakeClock) now() time.Time          { return time.Unix(0, f.ns.Load()) }
func (f *fakeClock) advance(d time.Duration) { f.ns.Add(int64(d)) }

// TestCapsRequestRate: an allocation's CreatePermission and ChannelBind requests beyond its
// rate (burst: 5 seconds' worth and one) are answered 508, signed, and counted; the bucket
// refills with time (a clock the test moves).
func TestCapsRequestRate(t *testing.T) {
	for _, n := range []Network{UDP, TCP} {
		t.Run(string(n), func(t *testing.T) {
			clock := &fakeClock{}
			clock.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			s := startServer(t, func(c *Config) { c.PermissionRate = 2; c.now = clock.now })
			c := dialCap(t, s, n)
			c.allocate()
			const burst = 2*5 + 1
			for i := 0; i < burst; i++ {
				req := c.createPermission
				if i%2 == 1 {
					req = func(p ...netip.AddrPort) stun.ErrorCode { return c.channelBind(0x4000, p[0]) }
				}
				if got := req(loPeer(1, 1)); got != 0 {
					t.Fatalf("request %d of a burst of %d: %d", i+1, burst, got)
				}
			}
			if got := c.createPermission(loPeer(1, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("request past the burst: %d, want 508", got)
			}
			if got := c.channelBind(0x4000, loPeer(1, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("ChannelBind past the burst: %d, want 508", got)
			}
			clock.advance(500 * time.Millisecond) // one request's worth at 2 per second
			if got := c.createPermission(loPeer(1, 1)); got != 0 {
				t.Fatalf("request after the bucket refilled by one: %d", got)
			}
			if got := c.createPermission(loPeer(1, 1)); got != stun.CodeInsufficientCapacity {
				t.Fatalf("second request after one refill: %d, want 508", got)
			}
			if got := s.capRefusals(capRate); got != 3 {
				t.Fatalf("%d requests counted over the rate, want 3", got)
			}
			// Another allocation has its own bucket.
			c2 := dialCap(t, s, n)
			c2.allocate()
			if got := c2.createPermission(loPeer(1, 1)); got != 0 {
				t.Fatalf("another allocation's first request: %d", got)
			}
		})
	}
}

// TestCapsCountsStayExact: many allocations come and go, each with permissions and channels;
// the gauges and the fast-path table count exactly what is live at every step and nothing
// once all are gone.
func TestCapsCountsStayExact(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "churn", time.Now().Add(time.Hour))
	check := func(step string, allocs, perms, chans int) {
		t.Helper()
		st := s.Stats()
		live := 0
		for _, f := range st.Allocations {
			for _, n := range f {
				live += n
			}
		}
		tp, tc := s.fast.Counts()
		ta, lp, lc := s.fast.Len() // every channel's peer IP has a permission here: IPs == permissions
		if live != allocs || st.Permissions != perms || st.Channels != chans || int(tp) != perms || int(tc) != chans ||
			ta != allocs || lp != perms || lc != chans || s.liveAllocations() != allocs {
			t.Fatalf("%s: gauges %d allocations, %d permissions, %d channels; table %d, %d, %d (counted %d, %d); want %d, %d, %d",
				step, live, st.Permissions, st.Channels, ta, lp, lc, tp, tc, allocs, perms, chans)
		}
	}
	var held []*rawClient
	for round := 0; round < 30; round++ {
		c := dialRaw(t, s.addrOf(UDP), username, password)
		if err := c.allocate(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := c.createPermission(loPeer(1, 1), loPeer(2, 1), loPeer(3, 1)); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := c.channelBind(0x4000, loPeer(1, 1)); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := c.channelBind(0x4001, loPeer(4, 1)); err != nil { // a fourth permission
			t.Fatalf("round %d: %v", round, err)
		}
		held = append(held, c)
		check(fmt.Sprintf("round %d, after binding", round), len(held), 4*len(held), 2*len(held))
		if round%3 == 2 { // end two of every three
			for _, d := range held[len(held)-2:] {
				if err := d.refresh(0); err != nil {
					t.Fatalf("round %d: refresh 0: %v", round, err)
				}
			}
			held = held[:len(held)-2]
			pollUntil(t, "the gauges to drop", func() bool { return s.Stats().Permissions == 4*len(held) })
			check(fmt.Sprintf("round %d, after deleting", round), len(held), 4*len(held), 2*len(held))
		}
	}
	for _, c := range held {
		if err := c.refresh(0); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Fatal(err)
		}
	}
	pollUntil(t, "every allocation to end", func() bool { return s.liveAllocations() == 0 })
	check("at the end", 0, 0, 0)
}
