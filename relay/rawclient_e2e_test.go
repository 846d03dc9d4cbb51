//go:build linux

package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/metrics"
)

// rawClient speaks TURN over a plain UDP socket one message at a time, built with pion/stun
// only, so that an end-to-end test decides every attribute: when a Send indication is used
// instead of a channel, which channel number is bound, what lifetime is asked for. pion's own
// client makes those choices itself (it binds channels behind the caller's back).
type rawClient struct {
	conn   *net.UDPConn
	server *net.UDPAddr

	username, password string
	realm              stun.Realm
	nonce              stun.Nonce
	integrity          stun.MessageIntegrity

	relayed   netip.AddrPort // XOR-RELAYED-ADDRESS of the allocation
	allocResp *stun.Message  // the Allocate success response
	mapped    netip.AddrPort // XOR-MAPPED-ADDRESS of the allocation

	// pending holds datagrams that arrived while a transaction waited for its response
	// (Data indications, ChannelData), in arrival order, for the next recv.
	pending [][]byte
	// finished holds the transaction ids of the transactions transact has ended: a
	// response with one of them answers a retransmission the relay took after the first
	// copy had been answered, and is discarded, as a STUN client discards a response that
	// matches no outstanding transaction.
	finished map[[stun.TransactionIDSize]byte]bool
}

// late reports whether b is a STUN response to a transaction c has ended.
func (c *rawClient) late(b []byte) bool {
	m := &stun.Message{Raw: b}
	return stun.IsMessage(b) && m.Decode() == nil &&
		(m.Type.Class == stun.ClassSuccessResponse || m.Type.Class == stun.ClassErrorResponse) &&
		c.finished[m.TransactionID]
}

// rawTimeout bounds every wait of a raw client; loopback answers in microseconds.
const rawTimeout = 2 * time.Second

// dialRaw opens a UDP socket on loopback of server's family, aimed at server.
func dialRaw(t testing.TB, server, username, password string) *rawClient {
	t.Helper()
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatalf("resolve %s: %v", server, err)
	}
	network, local := "udp4", "127.0.0.1:0"
	if sa.IP.To4() == nil {
		network, local = "udp6", "[::1]:0"
	}
	la, err := net.ResolveUDPAddr(network, local)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP(network, la)
	if err != nil {
		t.Fatalf("listen %s: %v", local, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawClient{conn: conn, server: sa, username: username, password: password}
}

// stunError is an error response to a raw request.
type stunError struct {
	method stun.Method
	code   stun.ErrorCode
	reason string
	msg    *stun.Message
}

func (e *stunError) Error() string {
	return fmt.Sprintf("%s error %d %s", e.method, e.code, e.reason)
}

// errorCode returns the STUN error code of err (0 if it is not an error response).
func errorCode(err error) stun.ErrorCode {
	var se *stunError
	if errors.As(err, &se) {
		return se.code
	}
	var te *stun.TurnError
	if errors.As(err, &te) {
		return te.ErrorCodeAttr.Code
	}
	return 0
}

// transact sends a request built from setters and returns the success response, a *stunError
// for an error response, or a timeout. The request is retransmitted (same transaction id)
// every 500 ms, as RFC 8489 §6.2.1 asks of a client over UDP, at most four times.
func (c *rawClient) transact(setters ...stun.Setter) (*stun.Message, error) {
	req, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if c.finished == nil {
		c.finished = map[[stun.TransactionIDSize]byte]bool{}
	}
	defer func() { c.finished[req.TransactionID] = true }()
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 4; attempt++ {
		if _, err := c.conn.WriteToUDP(req.Raw, c.server); err != nil {
			return nil, fmt.Errorf("%s: send: %w", req.Type.Method, err)
		}
		deadline := time.Now().Add(500 * time.Millisecond)
		for i := 0; i < 1000; i++ { // bounded: every datagram read either answers or is kept
			_ = c.conn.SetReadDeadline(deadline)
			n, _, err := c.conn.ReadFromUDP(buf)
			if err != nil {
				break // timeout: retransmit
			}
			d := append([]byte(nil), buf[:n]...)
			if c.late(d) {
				continue
			}
			if !stun.IsMessage(d) {
				c.pending = append(c.pending, d)
				continue
			}
			res := &stun.Message{Raw: d}
			if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID {
				c.pending = append(c.pending, d)
				continue
			}
			if res.Type.Class == stun.ClassErrorResponse {
				var ec stun.ErrorCodeAttribute
				if err := ec.GetFrom(res); err != nil {
					return nil, fmt.Errorf("%s: error response without ERROR-CODE: %w", req.Type.Method, err)
				}
				return nil, &stunError{method: req.Type.Method, code: ec.Code, reason: string(ec.Reason), msg: res}
			}
			return res, nil
		}
	}
	return nil, fmt.Errorf("%s: no response from %s within 2s", req.Type.Method, c.server)
}

// authed sends an authenticated request (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY,
// FINGERPRINT after the given attributes). A 438 Stale Nonce is retried once with the new
// nonce.
func (c *rawClient) authed(t stun.MessageType, setters ...stun.Setter) (*stun.Message, error) {
	for try := 0; ; try++ {
		all := append([]stun.Setter{t}, setters...)
		all = append(all, stun.NewUsername(c.username), c.realm, c.nonce, c.integrity, stun.Fingerprint)
		res, err := c.transact(all...)
		var se *stunError
		if try == 0 && errors.As(err, &se) && se.code == stun.CodeStaleNonce {
			if err := c.nonce.GetFrom(se.msg); err != nil {
				return nil, err
			}
			continue
		}
		return res, err
	}
}

// requestedTransportUDP is REQUESTED-TRANSPORT with protocol 17 (RFC 8656 §18.7).
var requestedTransportUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

// allocate runs the long-term credential exchange of RFC 8489 §9.2: an Allocate without
// credentials, the 401 that gives REALM and NONCE, the Allocate with MESSAGE-INTEGRITY.
func (c *rawClient) allocate(extra ...stun.Setter) error {
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	_, err := c.transact(append([]stun.Setter{allocate, requestedTransportUDP}, extra...)...)
	var se *stunError
	if !errors.As(err, &se) || se.code != stun.CodeUnauthorized {
		return fmt.Errorf("allocate without credentials: want 401, got %v", err)
	}
	if err := c.nonce.GetFrom(se.msg); err != nil {
		return fmt.Errorf("401 without NONCE: %w", err)
	}
	if err := c.realm.GetFrom(se.msg); err != nil {
		return fmt.Errorf("401 without REALM: %w", err)
	}
	c.integrity = stun.NewLongTermIntegrity(c.username, c.realm.String(), c.password)
	res, err := c.authed(allocate, append([]stun.Setter{requestedTransportUDP}, extra...)...)
	if err != nil {
		return err
	}
	var relayed, mapped stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return fmt.Errorf("allocate response without XOR-RELAYED-ADDRESS: %w", err)
	}
	if err := mapped.GetFrom(res); err != nil {
		return fmt.Errorf("allocate response without XOR-MAPPED-ADDRESS: %w", err)
	}
	c.relayed = addrPortOfUDP(relayed.IP, relayed.Port)
	c.mapped = addrPortOfUDP(mapped.IP, mapped.Port)
	c.allocResp = res
	return nil
}

func addrPortOfUDP(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

func peerAttr(peer netip.AddrPort) stun.Setter {
	return xorPeer{stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}}
}

type xorPeer struct{ a stun.XORMappedAddress }

func (p xorPeer) AddTo(m *stun.Message) error { return p.a.AddToAs(m, stun.AttrXORPeerAddress) }

// createPermission installs permissions for the peers' IP addresses (RFC 8656 §10).
func (c *rawClient) createPermission(peers ...netip.AddrPort) error {
	var s []stun.Setter
	for _, p := range peers {
		s = append(s, peerAttr(p))
	}
	_, err := c.authed(stun.NewType(stun.MethodCreatePermission, stun.ClassRequest), s...)
	return err
}

// channelBind binds channel num to peer (RFC 8656 §11).
func (c *rawClient) channelBind(num uint16, peer netip.AddrPort) error {
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, num)
	_, err := c.authed(stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}, peerAttr(peer))
	return err
}

// refresh asks for a new allocation lifetime; 0 deletes the allocation (RFC 8656 §8).
func (c *rawClient) refresh(lifetime time.Duration) error {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(lifetime/time.Second))
	_, err := c.authed(stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrLifetime, Value: v})
	return err
}

// sendIndication sends data to peer in a Send indication (RFC 8656 §11.1).
func (c *rawClient) sendIndication(peer netip.AddrPort, data []byte) error {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAttr(peer), stun.RawAttribute{Type: stun.AttrData, Value: data}, stun.Fingerprint)
	if err != nil {
		return err
	}
	_, err = c.conn.WriteToUDP(m.Raw, c.server)
	return err
}

// sendChannelData sends data on channel num (RFC 8656 §12.4); pad adds the padding to a
// multiple of four bytes that is optional over UDP.
func (c *rawClient) sendChannelData(num uint16, data []byte, pad bool) error {
	n := 4 + len(data)
	if pad {
		n = (n + 3) &^ 3
	}
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[0:], num)
	binary.BigEndian.PutUint16(b[2:], uint16(len(data)))
	copy(b[4:], data)
	_, err := c.conn.WriteToUDP(b, c.server)
	return err
}

// recv returns the next datagram from the server (kept ones first), or an error after d.
func (c *rawClient) recv(d time.Duration) ([]byte, error) {
	if len(c.pending) > 0 {
		b := c.pending[0]
		c.pending = c.pending[1:]
		return b, nil
	}
	buf := make([]byte, 2048)
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		if !c.late(buf[:n]) { // bounded by the deadline
			return buf[:n], nil
		}
	}
}

// recvData waits for a Data indication (RFC 8656 §11.4) and returns its peer and data.
func (c *rawClient) recvData() (netip.AddrPort, []byte, error) {
	b, err := c.recv(rawTimeout)
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("waiting for Data indication: %w", err)
	}
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("want Data indication, got % x: %w", b[:min(len(b), 16)], err)
	}
	if m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
		return netip.AddrPort{}, nil, fmt.Errorf("want Data indication, got %s", m.Type)
	}
	var peer stun.XORMappedAddress
	if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("Data indication without XOR-PEER-ADDRESS: %w", err)
	}
	data, err := m.Get(stun.AttrData)
	if err != nil {
		return netip.AddrPort{}, nil, fmt.Errorf("Data indication without DATA: %w", err)
	}
	return addrPortOfUDP(peer.IP, peer.Port), data, nil
}

// recvChannelData waits for a ChannelData message and returns its channel and data,
// checking the framing of RFC 8656 §12.4.
func (c *rawClient) recvChannelData() (uint16, []byte, error) {
	b, err := c.recv(rawTimeout)
	if err != nil {
		return 0, nil, fmt.Errorf("waiting for ChannelData: %w", err)
	}
	if len(b) < 4 || b[0]&0xC0 != 0x40 {
		return 0, nil, fmt.Errorf("want ChannelData, got % x", b[:min(len(b), 16)])
	}
	length := int(binary.BigEndian.Uint16(b[2:]))
	if 4+length > len(b) || len(b) > (4+length+3)&^3 {
		return 0, nil, fmt.Errorf("ChannelData length %d in a datagram of %d bytes", length, len(b))
	}
	return binary.BigEndian.Uint16(b), b[4 : 4+length], nil
}

// expectSilence reports an error if the client receives anything within d. It is only used
// after a counter has shown that the server decided to drop, so d bounds the wait for a
// packet that must not exist; it is not synchronisation.
func (c *rawClient) expectSilence(d time.Duration) error {
	b, err := c.recv(d)
	if err == nil {
		return fmt.Errorf("unexpected datagram from the relay: % x", b[:min(len(b), 16)])
	}
	return nil
}

// pollUntil polls cond every few milliseconds until it holds or 3 s pass.
func pollUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 3s waiting for %s", what)
		}
		<-tick.C
	}
}

// udpPeer is a plain UDP socket standing for a peer on loopback.
type udpPeer struct{ conn *net.UDPConn }

func newUDPPeer(t testing.TB, addr string) *udpPeer {
	t.Helper()
	la, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		t.Skipf("cannot open a peer socket on %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpPeer{conn: conn}
}

func (p *udpPeer) addr() netip.AddrPort { return p.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *udpPeer) send(to netip.AddrPort, b []byte) error {
	_, err := p.conn.WriteToUDPAddrPort(b, to)
	return err
}

func (p *udpPeer) recv(d time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 2048)
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

// expect fails t unless the next datagram comes from from and carries want (byte-exact).
func (p *udpPeer) expect(t testing.TB, i int, from netip.AddrPort, want []byte) {
	t.Helper()
	got, src, err := p.recv(rawTimeout)
	if err != nil {
		t.Fatalf("packet %d: peer: %v", i, err)
	}
	if src != from {
		t.Fatalf("packet %d came from %v, want %v", i, src, from)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("packet %d: peer got % x, want % x", i, got, want)
	}
}

// payload returns s bytes that differ per (seed, i) and cover every byte value, so that a
// payload delivered to the wrong place, truncated or shifted does not compare equal.
func payload(seed, i, s int) []byte {
	b := make([]byte, s)
	for k := range b {
		b[k] = byte(seed*131 + i*31 + k*7)
	}
	if s >= 4 {
		binary.BigEndian.PutUint16(b, uint16(seed))
		binary.BigEndian.PutUint16(b[2:], uint16(i))
	}
	return b
}

// traffic returns the packets and bytes s counted for a direction and path.
func traffic(s *Server, dir metrics.Direction, path metrics.Path) metrics.Counter {
	return s.Stats().Traffic[dir][path]
}

// noAllocations reports whether s counts no live allocation and holds no relay port.
func noAllocations(s *Server) bool {
	st := s.Stats()
	for _, f := range st.Allocations {
		for _, n := range f {
			if n != 0 {
				return false
			}
		}
	}
	return st.Ports.Held == 0
}
