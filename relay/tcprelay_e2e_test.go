//go:build linux

package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// RFC 6062 TCP allocations end to end, with pion's client (AllocateTCP, Dial, Accept) over
// TURN-TCP, peers on loopback.

// tcpPeer is a TCP listener on loopback that a test plays the peer on.
type tcpPeer struct {
	ln    *net.TCPListener
	conns chan *net.TCPConn
}

// listenPeer listens on addr ("127.0.0.1:0", "[::1]:0") and queues accepted connections.
func listenPeer(t testing.TB, addr string) *tcpPeer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpPeer{ln: ln.(*net.TCPListener), conns: make(chan *net.TCPConn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := p.ln.AcceptTCP()
			if err != nil {
				return
			}
			p.conns <- c
		}
	}()
	t.Cleanup(func() {
		p.ln.Close()
		<-done
		close(p.conns)
		for c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *tcpPeer) addr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(p.ln.Addr().String())
	return ap
}

// accept waits for the next connection the peer accepted.
func (p *tcpPeer) accept(t testing.TB) *net.TCPConn {
	t.Helper()
	select {
	case c := <-p.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the peer accepted no connection within 5s")
		return nil
	}
}

// echo copies what c reads back to it until EOF, then closes it. The returned channel is
// closed when it is done.
func echo(c net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, c)
		c.Close()
	}()
	return done
}

// exchange writes n random bytes on c and reads them back (an echoing far end), checking
// them; writer and reader run side by side so that neither window fills.
func exchange(t testing.TB, c net.Conn, n int) {
	t.Helper()
	out := make([]byte, n)
	_, _ = rand.Read(out)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		werr <- err
	}()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	in := make([]byte, n)
	if _, err := io.ReadFull(c, in); err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(in, out) {
		t.Fatal("the echo differs from what was sent")
	}
}

func tcpTraffic(s *Server, d metrics.Direction) uint64 {
	return s.Stats().Traffic[d][metrics.PathTCP].Bytes
}

// RFC 6062 §4.3: the client sends Connect, opens a data connection, sends ConnectionBind on
// it, and from then on the data connection carries the peer connection's bytes.
func TestTCPAllocationConnect(t *testing.T) {
	s := startServer(t, nil)
	peer := listenPeer(t, "127.0.0.1:0")
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	c := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	t.Cleanup(func() { alloc.Close() })
	if got := s.Stats().Allocations[metrics.TransportTCP][metrics.FamilyIPv4]; got != 1 {
		t.Fatalf("TCP allocations gauge %d, want 1", got)
	}
	conn, err := alloc.Dial("tcp", peer.addr().String())
	if err != nil {
		t.Fatalf("Dial through the relay: %v", err)
	}
	pc := peer.accept(t)
	if pc.RemoteAddr().String() != alloc.Addr().String() {
		t.Errorf("the peer sees %v, want the relayed address %v", pc.RemoteAddr(), alloc.Addr())
	}
	done := echo(pc)
	const n = 4 << 20
	exchange(t, conn, n)
	if got := tcpTraffic(s, metrics.ClientToPeer); got != n {
		t.Errorf("client_to_peer tcp bytes %d, want %d", got, n)
	}
	pollUntil(t, "peer_to_client bytes counted", func() bool { return tcpTraffic(s, metrics.PeerToClient) == n })
	// Closing the client's data connection closes the peer's.
	conn.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the peer connection stayed open after the client closed its data connection")
	}
	pollUntil(t, "peer connection released", func() bool { total, _ := s.tcpConns.live("alice"); return total == 0 })
}

// RFC 6062 §4.4: a peer connecting to the relayed address, with a permission, is announced
// by ConnectionAttempt; the client binds a data connection to it. Without a permission the
// connection is closed.
func TestTCPAllocationAccept(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "bob", time.Now().Add(time.Hour))
	c := newStreamClient(t, s.addrOf(TCP), nil, username, password)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	t.Cleanup(func() { alloc.Close() })

	// No permission yet: the relay closes the peer's connection.
	stray, err := net.Dial("tcp", alloc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = stray.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := stray.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a peer without a permission was not closed: %v", err)
	}
	stray.Close()

	// The peer dials from a fixed local address, so that the permission is for it.
	if err := c.CreatePermission(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatalf("CreatePermission: %v", err)
	}
	pconn, err := net.Dial("tcp", alloc.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pconn.Close() })
	conn, err := alloc.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	defer conn.Close()
	done := echo(conn)
	exchange(t, pconn, 1<<20)
	pconn.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the client's data connection stayed open after the peer closed")
	}
}

// A Connect whose ConnectionBind never comes: the peer connection is closed after
// TCPConnectionBindTimeout (RFC 6062 §5.3), which the peer sees as EOF.
func TestTCPConnectionBindTimeout(t *testing.T) {
	s := startServer(t, func(c *Config) { c.TCPConnectionBindTimeout = 200 * time.Millisecond })
	peer := listenPeer(t, "127.0.0.1:0")
	rc := newRawStreamAllocation(t, s, "carol")
	if _, err := rc.connect(peer.addr()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	pc := peer.accept(t)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := pc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer read %d, %v; want EOF once the bind timeout closes it", n, err)
	}
	if got := s.tcpStats.bindTimeout.Load(); got != 1 {
		t.Errorf("bind timeouts counted %d, want 1", got)
	}
	pollUntil(t, "slot released", func() bool { total, _ := s.tcpConns.live("carol"); return total == 0 })
	if got := s.Stats().TCPRelay; got.BindTimeouts != 1 || got.Conns != 0 {
		t.Errorf("metrics: %+v, want 1 bind timeout and no connection open", got)
	}
}

// The limits count peer connections per allocation, per user and in total: one beyond is
// answered 447 and never reaches the peer.
func TestTCPRelayConnLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(c *Config)
		users []string // the allocation each Connect is made on, by user; the last is refused
		limit metrics.TCPLimit
	}{
		{name: "per allocation", mod: func(c *Config) { c.MaxTCPRelayConnsPerAllocation = 2 }, users: []string{"dave", "dave", "dave"}, limit: metrics.TCPLimitAllocation},
		{name: "per user", mod: func(c *Config) { c.MaxTCPRelayConnsPerUser = 2 }, users: []string{"erin", "erin#2", "erin#2"}, limit: metrics.TCPLimitUser},
		{name: "total", mod: func(c *Config) { c.MaxTCPRelayConns = 2 }, users: []string{"frank", "grace", "heidi"}, limit: metrics.TCPLimitTotal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.mod)
			allocs := map[string]*tcpAllocClient{}
			for i, u := range tc.users {
				c := allocs[u]
				if c == nil {
					user, _, _ := strings.Cut(u, "#") // "#2": a second allocation of the user
					c = newRawStreamAllocation(t, s, user)
					allocs[u] = c
				}
				if i < len(tc.users)-1 {
					// Distinct peers: Connect to the same one twice is 446.
					if _, err := c.connect(listenPeer(t, "127.0.0.1:0").addr()); err != nil {
						t.Fatalf("Connect %d: %v", i, err)
					}
					continue
				}
				silent := silentListener(t, "127.0.0.1:0")
				_, err := c.connect(silent.addr())
				if got := errorCode(err); got != stun.CodeConnTimeoutOrFailure {
					t.Fatalf("Connect over the limit: %v (code %d), want 447", err, got)
				}
				if silent.accepted() {
					t.Fatal("the peer over the limit was connected to")
				}
			}
			if got := s.tcpStats.overLimit.Load(); got != 1 {
				t.Errorf("refusals by the limits %d, want 1", got)
			}
			var want [metrics.NumTCPLimits]uint64
			want[tc.limit] = 1
			if got := s.Stats().TCPRelay; got.LimitRefused != want || got.Conns != 2 {
				t.Errorf("metrics: %d connections open, refusals by limit %v; want 2, %v", got.Conns, got.LimitRefused, want)
			}
		})
	}
}

// A bound pair across which nothing moves for TCPRelayIdleTimeout is closed, both ends.
func TestTCPRelayIdleTimeout(t *testing.T) {
	s := startServer(t, func(c *Config) { c.TCPRelayIdleTimeout = 300 * time.Millisecond })
	peer := listenPeer(t, "127.0.0.1:0")
	c := newRawStreamAllocation(t, s, "ivan")
	pc, data := connectBound(t, c, peer)
	done := echo(pc)
	exchange(t, data, 64<<10)
	select {
	case <-done: // the peer's connection ended: the relay closed it
	case <-time.After(10 * time.Second):
		t.Fatal("an idle pair was not closed within 10s")
	}
	_ = data.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := data.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client's data connection is still open: %v", err)
	}
	if s.tcpStats.idleTimeout.Load() == 0 {
		t.Error("no idle timeout counted")
	}
	if got := s.Stats().TCPRelay.IdleCloses; got != s.tcpStats.idleTimeout.Load() || got == 0 {
		t.Errorf("metrics: %d idle closes", got)
	}
}

// Over TURN-TLS the data connection is TLS too (RFC 6062 §4.3: "the client MUST ... use the
// same transport ... as for the control connection"); its bytes are copied, not spliced.
func TestTCPAllocationOverTLS(t *testing.T) {
	cert, roots := selfSigned(t)
	s := startServer(t, func(c *Config) {
		c.Listeners = []ListenerConfig{{Network: TLS, Addr: netip.MustParseAddrPort("127.0.0.1:0")}}
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	peer := listenPeer(t, "127.0.0.1:0")
	c := newRawStreamAllocationOn(t, s.addrOf(TLS), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, "judy")
	if got := s.Stats().Allocations[metrics.TransportTLS][metrics.FamilyIPv4]; got != 1 {
		t.Fatalf("TLS allocations gauge %d, want 1", got)
	}
	pc, data := connectBound(t, c, peer)
	echo(pc)
	const n = 1 << 20
	exchange(t, data, n)
	if got := tcpTraffic(s, metrics.ClientToPeer); got != n {
		t.Errorf("client_to_peer tcp bytes %d, want %d", got, n)
	}
}

// A policy reload applies to peers connecting in: the permission pion still holds does not
// let a peer the new policy refuses through.
func TestTCPInboundPolicyReload(t *testing.T) {
	s := startServer(t, nil)
	c := newRawStreamAllocation(t, s, "ken")
	if _, err := c.authedOn(c.conn, stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), xorPeerAs{ip: netip.MustParseAddr("127.0.0.1"), port: 9}); err != nil {
		t.Fatalf("CreatePermission: %v", err)
	}
	s.SetPeerPolicy(PeerPolicy{}) // loopback refused from now on
	drops := s.Stats().Drops[metrics.DropPolicy]
	in, err := net.Dial("tcp", c.relayed.String())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := in.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a peer the reloaded policy refuses was kept: %v", err)
	}
	if s.Stats().Drops[metrics.DropPolicy] == drops {
		t.Error("the refused inbound peer was not counted as a policy drop")
	}
	if got := s.Stats().TCPRelay.PolicyRefused; got != [metrics.NumTCPPolicyStages]uint64{metrics.TCPPolicyInbound: 1} {
		t.Errorf("TCP relay policy refusals %v, want 1 inbound", got)
	}
}

// quietListener is a TCP listener nobody accepts on: whether a connection reached it is
// read from its accept queue.
type quietListener struct{ ln *net.TCPListener }

func silentListener(t testing.TB, addr string) quietListener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return quietListener{ln.(*net.TCPListener)}
}

func (l quietListener) addr() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(l.ln.Addr().String())
	return ap
}

// accepted reports whether a connection waits in the accept queue. The relay answers a
// Connect only after its connect(2) returned, when the handshake is complete and the
// connection queued, so asking after the answer is conclusive.
func (l quietListener) accepted() bool {
	rc, err := l.ln.SyscallConn()
	if err != nil {
		return false
	}
	got := false
	_ = rc.Control(func(fd uintptr) {
		nfd, _, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == nil {
			got = true
			unix.Close(nfd)
		}
	})
	return got
}

// tcpAllocClient speaks TURN over one TCP or TLS connection, a message at a time, built with
// pion/stun only: the tests decide every attribute, and send what pion's client would not.
type tcpAllocClient struct {
	t                  testing.TB
	server             string
	tls                *tls.Config // nil: TCP
	conn               net.Conn
	username, password string
	realm              stun.Realm
	nonce              stun.Nonce
	integrity          stun.MessageIntegrity
	relayed            netip.AddrPort
	indications        []*stun.Message // indications read while waiting for a response
}

func dialTURNStream(t testing.TB, server string, cfg *tls.Config) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: rawTimeout}
	var c net.Conn
	var err error
	if cfg != nil {
		c, err = tls.DialWithDialer(&d, "tcp", server, cfg)
	} else {
		c, err = d.Dial("tcp", server)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", server, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newRawStreamAllocation makes a TCP allocation over TCP for user.
func newRawStreamAllocation(t testing.TB, s *Server, user string) *tcpAllocClient {
	t.Helper()
	return newRawStreamAllocationOn(t, s.addrOf(TCP), nil, user)
}

func newRawStreamAllocationOn(t testing.TB, server string, cfg *tls.Config, user string, extra ...stun.Setter) *tcpAllocClient {
	t.Helper()
	username, password := auth.MintREST(testSecret, user, time.Now().Add(time.Hour))
	c := &tcpAllocClient{t: t, server: server, tls: cfg, conn: dialTURNStream(t, server, cfg), username: username, password: password}
	if err := c.allocate(extra...); err != nil {
		t.Fatalf("Allocate TCP: %v", err)
	}
	return c
}

// readMsg reads one STUN message from conn.
func readMsg(conn net.Conn) (*stun.Message, error) {
	_ = conn.SetReadDeadline(time.Now().Add(rawTimeout))
	head := make([]byte, stunHeaderSize)
	if _, err := io.ReadFull(conn, head); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint16(head[2:4]))
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	m := &stun.Message{Raw: append(head, body...)}
	return m, m.Decode()
}

// transactOn sends a request on conn and returns the success response or a *stunError.
func transactOn(conn net.Conn, setters ...stun.Setter) (*stun.Message, []*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.Write(req.Raw); err != nil {
		return nil, nil, err
	}
	var ind []*stun.Message
	for range 100 {
		res, err := readMsg(conn)
		if err != nil {
			return nil, ind, fmt.Errorf("%s: %w", req.Type.Method, err)
		}
		if res.Type.Class == stun.ClassIndication {
			ind = append(ind, res)
			continue
		}
		if res.TransactionID != req.TransactionID {
			continue
		}
		if res.Type.Class == stun.ClassErrorResponse {
			var ec stun.ErrorCodeAttribute
			_ = ec.GetFrom(res)
			return nil, ind, &stunError{method: req.Type.Method, code: ec.Code, reason: string(ec.Reason), msg: res}
		}
		return res, ind, nil
	}
	return nil, ind, errors.New("no response")
}

// authedOn sends an authenticated request on conn, answering a 401 or 438 once.
func (c *tcpAllocClient) authedOn(conn net.Conn, t stun.MessageType, setters ...stun.Setter) (*stun.Message, error) {
	for try := 0; ; try++ {
		all := append([]stun.Setter{t}, setters...)
		if c.nonce != nil {
			all = append(all, stun.NewUsername(c.username), c.realm, c.nonce, c.integrity)
		}
		all = append(all, stun.Fingerprint)
		res, ind, err := transactOn(conn, all...)
		c.indications = append(c.indications, ind...)
		var se *stunError
		if try == 0 && errors.As(err, &se) && (se.code == stun.CodeUnauthorized || se.code == stun.CodeStaleNonce) {
			if err := c.nonce.GetFrom(se.msg); err != nil {
				return nil, err
			}
			if err := c.realm.GetFrom(se.msg); err != nil {
				return nil, err
			}
			c.integrity = stun.NewLongTermIntegrity(c.username, c.realm.String(), c.password)
			continue
		}
		return res, err
	}
}

var requestedTransportTCP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{6, 0, 0, 0}}

// requestedFamilyIPv6 is REQUESTED-ADDRESS-FAMILY IPv6 (RFC 6156 §4.1.1).
var requestedFamilyIPv6 = stun.RawAttribute{Type: stun.AttrRequestedAddressFamily, Value: []byte{2, 0, 0, 0}}

func (c *tcpAllocClient) allocate(extra ...stun.Setter) error {
	res, err := c.authedOn(c.conn, stun.NewType(stun.MethodAllocate, stun.ClassRequest), append([]stun.Setter{requestedTransportTCP}, extra...)...)
	if err != nil {
		return err
	}
	var ra stun.XORMappedAddress
	if err := ra.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return err
	}
	ip, _ := netip.AddrFromSlice(ra.IP)
	c.relayed = netip.AddrPortFrom(ip.Unmap(), uint16(ra.Port))
	return nil
}

// connect sends Connect for peer and returns the CONNECTION-ID.
func (c *tcpAllocClient) connect(peer netip.AddrPort) (uint32, error) {
	return c.connectAs(xorPeerAs{ip: peer.Addr(), port: peer.Port(), six: peer.Addr().Is6()})
}

func (c *tcpAllocClient) connectAs(peer xorPeerAs) (uint32, error) {
	res, err := c.authedOn(c.conn, stun.NewType(stun.MethodConnect, stun.ClassRequest), peer)
	if err != nil {
		return 0, err
	}
	v, err := res.Get(stun.AttrConnectionID)
	if err != nil || len(v) != 4 {
		return 0, fmt.Errorf("Connect success without CONNECTION-ID: %v", err)
	}
	return binary.BigEndian.Uint32(v), nil
}

// connectBound makes c Connect to peer (RFC 6062), takes the peer's side of the connection
// and binds a data connection to it with ConnectionBind: it returns the peer's connection and
// the client's data connection.
func connectBound(t testing.TB, c *tcpAllocClient, peer *tcpPeer) (*net.TCPConn, net.Conn) {
	t.Helper()
	id, err := c.connect(peer.addr())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	pc := peer.accept(t)
	data, err := c.bind(id)
	if err != nil {
		t.Fatalf("ConnectionBind: %v", err)
	}
	return pc, data
}

// bind opens a data connection and binds it to connection id.
func (c *tcpAllocClient) bind(id uint32) (net.Conn, error) {
	data := dialTURNStream(c.t, c.server, c.tls)
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, id)
	_, err := c.authedOn(data, stun.NewType(stun.MethodConnectionBind, stun.ClassRequest), stun.RawAttribute{Type: stun.AttrConnectionID, Value: v})
	if err != nil {
		return nil, err
	}
	_ = data.SetReadDeadline(time.Time{})
	return data, nil
}

// RFC 6062 §5.1: a TCP allocation over UDP, or with DONT-FRAGMENT, EVEN-PORT or
// RESERVATION-TOKEN, is refused with 400, and binds nothing.
func TestTCPAllocationRefused(t *testing.T) {
	s := startServer(t, nil)
	username, password := auth.MintREST(testSecret, "leo", time.Now().Add(time.Hour))
	c := dialRaw(t, s.addrOf(UDP), username, password)
	_, err := c.transact(stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportTCP, stun.Fingerprint)
	if got := errorCode(err); got != stun.CodeBadRequest {
		t.Fatalf("Allocate TCP over UDP: %v (code %d), want 400", err, got)
	}
	for _, tc := range []struct {
		name string
		attr stun.Setter
	}{
		{"dont-fragment", stun.RawAttribute{Type: stun.AttrDontFragment}},
		{"even-port", stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}}},
		{"reservation-token", stun.RawAttribute{Type: stun.AttrReservationToken, Value: make([]byte, 8)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &tcpAllocClient{t: t, server: s.addrOf(TCP), conn: dialTURNStream(t, s.addrOf(TCP), nil), username: username, password: password}
			if err := c.allocate(tc.attr); errorCode(err) != stun.CodeBadRequest {
				t.Fatalf("Allocate TCP with %s: %v (code %d), want 400", tc.name, err, errorCode(err))
			}
		})
	}
	if held := s.Stats().Ports.Held; held != 0 {
		t.Fatalf("%d ports held after refused Allocates", held)
	}
}

// NoTCPRelay refuses TCP allocations (508, pion's answer to a relayed address it cannot get)
// and binds nothing; UDP allocations go on.
func TestNoTCPRelay(t *testing.T) {
	s := startServer(t, func(c *Config) { c.NoTCPRelay = true })
	username, password := auth.MintREST(testSecret, "mike", time.Now().Add(time.Hour))
	c := &tcpAllocClient{t: t, server: s.addrOf(TCP), conn: dialTURNStream(t, s.addrOf(TCP), nil), username: username, password: password}
	if err := c.allocate(); errorCode(err) != stun.CodeInsufficientCapacity {
		t.Fatalf("Allocate TCP with NoTCPRelay: %v (code %d), want 508", err, errorCode(err))
	}
	if held := s.Stats().Ports.Held; held != 0 {
		t.Fatalf("%d ports held after a refused Allocate", held)
	}
	newRawAllocation(t, s, "mike")
}

// A policy reload that refuses a peer closes its bound TCP relay connection, both ends.
func TestTCPPolicyReloadClosesBound(t *testing.T) {
	s := startServer(t, nil)
	peer := listenPeer(t, "127.0.0.1:0")
	c := newRawStreamAllocation(t, s, "nina")
	pc, data := connectBound(t, c, peer)
	done := echo(pc)
	exchange(t, data, 4096)
	if got := s.Stats().TCPRelay.Conns; got != 1 {
		t.Errorf("metrics: %d TCP relay connections open, want 1", got)
	}
	s.SetPeerPolicy(PeerPolicy{}) // loopback refused from now on
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the refused peer's connection stayed open after the reload")
	}
	if got := s.Stats().TCPRelay; got.PolicyRefused != [metrics.NumTCPPolicyStages]uint64{metrics.TCPPolicyReload: 1} || got.Conns != 0 {
		t.Errorf("metrics: %+v, want 1 refused by the reload and none open", got)
	}
	_ = data.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := data.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client's data connection is still open: %v", err)
	}
}

// RFC 6062 §4.3 has the client wait for the ConnectionBind success response before it sends
// data, but bytes it sends right behind the request (in the same segment) are the peer's, not
// frames for pion: they reach the peer, first.
func TestTCPDataBehindConnectionBind(t *testing.T) {
	s := startServer(t, nil)
	peer := listenPeer(t, "127.0.0.1:0")
	c := newRawStreamAllocation(t, s, "oscar")
	id, err := c.connect(peer.addr())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	pc := peer.accept(t)
	data := dialTURNStream(t, c.server, nil)
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, id)
	// Looks like a STUN header to a framer, on purpose.
	payload := append([]byte{0x00, 0x01, 0x00, 0x00}, []byte("not a frame: peer data, 20+ bytes")...)
	// SOFTWARE makes the request 144 bytes: framedConn reads a new connection 64 bytes at a
	// time until its first frame is complete, so the read that completes the request also
	// takes the payload behind it.
	req, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodConnectionBind, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrConnectionID, Value: v}, stun.NewSoftware("avedge-test"),
		stun.NewUsername(c.username), c.realm, c.nonce, c.integrity, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Raw)%64 == 0 || len(req.Raw)%64+len(payload) > 64 {
		t.Fatalf("the request is %d bytes: the payload would not share its last read", len(req.Raw))
	}
	if _, err := data.Write(append(append([]byte(nil), req.Raw...), payload...)); err != nil {
		t.Fatal(err)
	}
	res, err := readMsg(data)
	if err != nil || res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ConnectionBind answer %v, %v; want success", res, err)
	}
	got := make([]byte, len(payload))
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(pc, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("the peer read %q, %v; want %q", got, err, payload)
	}
}

// The TCP relay over IPv6 (RFC 6156 REQUESTED-ADDRESS-FAMILY): an IPv6 relayed address,
// connected to an IPv6 peer, relaying both ways.
func TestTCPAllocationIPv6(t *testing.T) {
	if !haveIPv6Loopback() {
		t.Skip("::1 is not configured")
	}
	s := dualStackServer(t, true, func(c *Config) { c.Peers = PeerPolicy{AllowLoopback: true} })
	peer := listenPeer(t, "[::1]:0")
	c := newRawStreamAllocationOn(t, listenAddr(s, TCP, true), nil, "peggy", requestedFamilyIPv6)
	if !c.relayed.Addr().Is6() {
		t.Fatalf("relayed address %v, want IPv6", c.relayed)
	}
	pc, data := connectBound(t, c, peer)
	if pc.RemoteAddr().String() != c.relayed.String() {
		t.Errorf("the peer sees %v, want the relayed address %v", pc.RemoteAddr(), c.relayed)
	}
	echo(pc)
	exchange(t, data, 256<<10)
	if got := s.Stats().Allocations[metrics.TransportTCP][metrics.FamilyIPv6]; got != 1 {
		t.Errorf("IPv6 TCP allocations gauge %d, want 1", got)
	}
}

// Flows that end, and allocations that end, leave nothing behind: no peer connection slot,
// no relayed address, no port, no goroutine.
func TestTCPRelayNoLeaks(t *testing.T) {
	s := startServer(t, nil)
	peer := listenPeer(t, "127.0.0.1:0")
	base := runtime.NumGoroutine()
	for i := range 10 {
		username, password := auth.MintREST(testSecret, fmt.Sprintf("quinn%d", i), time.Now().Add(time.Hour))
		ctl := dialTURNStream(t, s.addrOf(TCP), nil)
		c, err := turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: s.addrOf(TCP), TURNServerAddr: s.addrOf(TCP),
			Conn: turn.NewSTUNConn(ctl), Username: username, Password: password, Realm: "avedge",
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Listen(); err != nil {
			t.Fatal(err)
		}
		alloc, err := c.AllocateTCP()
		if err != nil {
			t.Fatalf("AllocateTCP %d: %v", i, err)
		}
		conn, err := alloc.Dial("tcp", peer.addr().String())
		if err != nil {
			t.Fatalf("Dial %d: %v", i, err)
		}
		echo(peer.accept(t))
		exchange(t, conn, 32<<10)
		conn.Close()
		if err := alloc.Close(); err != nil {
			t.Fatalf("close allocation %d: %v", i, err)
		}
		c.Close()
		ctl.Close() // pion's client does not close the connection it was given
	}
	pollUntil(t, "allocations, slots and ports released", func() bool {
		s.mu.Lock()
		open := len(s.tcpRelays) + len(s.tcpAllocs)
		s.mu.Unlock()
		total, _ := s.tcpConns.live("")
		return open == 0 && total == 0 && s.Stats().Ports.Held == 0
	})
	pollUntil(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base })
}

// Shutdown waits for TCP allocations as for UDP ones, refuses new ones while it waits, and
// closes what is left at its deadline.
func TestTCPShutdown(t *testing.T) {
	s := startServer(t, nil)
	newRawStreamAllocation(t, s, "rita")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	pollUntil(t, "draining", func() bool { ok, _ := s.Ready(); return !ok })
	username, password := auth.MintREST(testSecret, "sam", time.Now().Add(time.Hour))
	c := &tcpAllocClient{t: t, server: s.addrOf(TCP), conn: dialTURNStream(t, s.addrOf(TCP), nil), username: username, password: password}
	if err := c.allocate(); errorCode(err) != stun.CodeInsufficientCapacity {
		t.Errorf("Allocate TCP while draining: %v (code %d), want 508", err, errorCode(err))
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a live TCP allocation past its deadline: %v, want DeadlineExceeded", err)
	}
	if st := s.Stats(); st.Ports.Held != 0 {
		t.Fatalf("ports held %d after Shutdown", st.Ports.Held)
	}
}
