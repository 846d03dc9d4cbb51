//go:build linux

package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/policy"
)

// RFC 6062 TCP allocations. pion/turn v5 runs their control side: the Allocate with
// REQUESTED-TRANSPORT TCP (which asks AllocateListener for the relayed address), Connect
// (the PermissionHandler, then AllocateConn for the peer connection, then CONNECTION-ID),
// ConnectionAttempt for a peer connection accepted on the relayed address (after pion's
// permission check), ConnectionBind on a new client data connection, and its own 30-second
// timer on unbound peer connections. The relay supplies:
//
//   - the relayed address (tcpRelay): a listening socket on a port of the edge range,
//     counted against the user quota like a UDP allocation; its Accept refuses peers the
//     policy refuses and connections over the limits;
//   - the peer connections (peerConn), counted per allocation, per user and in total, and
//     closed when no ConnectionBind claims them within TCPConnectionBindTimeout;
//   - the policy with the port: a Connect to one of the relay's own services (peerPortOK)
//     is refused by the PermissionHandler, so pion answers 403 and never dials;
//   - the data relay: pion joins a bound pair with an io.Copy each way; the client side is
//     a framedConn, whose WriteTo and ReadFrom take both copies over and move the bytes with
//     splice(2) through a pipe (net.TCPConn.ReadFrom), counted in the metrics, closing an
//     idle pair. A TLS client connection is copied through a buffer (its bytes are
//     encrypted in user space).

// tcpRelay is the relayed transport address of one TCP allocation.
type tcpRelay struct {
	ln         *net.TCPListener // Static.
	srv        *Server          // Static.
	user       string           // Static.
	local      netip.AddrPort   // the bound address. Static.
	advertised netip.AddrPort   // Static.
	created    time.Time        // Static.
	release    func()           // gives the port and the quota back. Called once, by Close.
	done       chan struct{}    // closed by Close
	closeOnce  sync.Once

	conns     int // live peer connections. Guarded by srv.tcpConns.mu.
	transport int // metrics transport index. Set by onTCPAllocationCreated under srv.mu.

	// For the admin API (tcpadmin.go).
	id      uint64                               // the allocation's admin id, as a relayConn's: seq<<16 | port. Static.
	key     allocKey                             // the client's 5-tuple. Set by onTCPAllocationCreated under srv.mu.
	ending  atomic.Uint32                        // an endReason, set when the admin API or a revocation ends it
	expires atomic.Int64                         // unix nanoseconds the allocation lapses unless refreshed; 0: not known
	bytes   [metrics.NumDirections]atomic.Uint64 // relayed by its peer connections, ended ones included
	rate    rateSample
}

var _ net.Listener = (*tcpRelay)(nil)

// Addr is the relayed address as advertised.
func (r *tcpRelay) Addr() net.Addr { return net.TCPAddrFromAddrPort(r.advertised) }

// Accept returns the next peer connection the policy and the limits let in. pion asks each
// for a permission (RFC 6062 §5.3: "the server MUST check that the peer's IP address has a
// permission"), then sends the client a ConnectionAttempt. It returns an error only once
// the relay is closed: pion ends the allocation on the first error.
func (r *tcpRelay) Accept() (net.Conn, error) {
	s := r.srv
	var delay time.Duration
	for {
		c, err := r.ln.AcceptTCP()
		if err != nil {
			select {
			case <-r.done:
				return nil, net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		peer, _ := sock.AddrPortOf(c.RemoteAddr())
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		if res := s.peers.Load().Check(peer.Addr()); res != policy.Allowed {
			s.slowStats.Drop(dataplane.DropPolicy)
			s.tcpStats.policy[metrics.TCPPolicyInbound].Add(1)
			s.logInput(string(res), "inbound TCP peer refused by policy", "relay", r.advertised.String(), "peer", peer.String())
			_ = c.Close()
			continue
		}
		if limit, ok := s.tcpConns.acquire(s, r); !ok {
			s.tcpStats.refuse(limit)
			_ = c.Close()
			continue
		}
		return s.newPeerConn(r, c, peer), nil
	}
}

// Close stops accepting and gives the port and the quota back. pion closes the
// allocation's peer connections itself.
func (r *tcpRelay) Close() error {
	err := net.ErrClosed
	r.closeOnce.Do(func() {
		close(r.done)
		err = r.ln.Close()
		if r.ending.Load() != 0 && errors.Is(err, net.ErrClosed) {
			err = nil // end closed it first
		}
		r.release()
		r.srv.tcpRelayClosed(r)
	})
	return err
}

// AllocateListener binds the relayed address of a TCP allocation (RFC 6062 §5.1) on a port
// of the edge range, after the quota check AllocatePacketConn makes.
func (g *relayGen) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	s := g.srv
	if s.cfg.NoTCPRelay {
		s.countAttempt(metrics.AttemptBadRequest)
		return nil, nil, ErrTCPRelayDisabled
	}
	if s.draining.Load() {
		s.countAttempt(metrics.AttemptDraining)
		return nil, nil, ErrDraining
	}
	fam := 0
	if c.Network == "tcp6" {
		fam = 1
	}
	if len(s.relayIPs[fam]) == 0 {
		s.countAttempt(metrics.AttemptBadRequest)
		return nil, nil, fmt.Errorf("relay: no relay address for %s (set relay-ip)", c.Network)
	}
	if ok, total := s.quota.Acquire(c.UserID); !ok {
		if total {
			s.countAttempt(metrics.AttemptCapacity)
		} else {
			s.countAttempt(metrics.AttemptQuota)
		}
		return nil, nil, errQuota
	}
	var ln *net.TCPListener
	bindOn := func(ip netip.Addr) func(uint16) error {
		return func(port uint16) error {
			l, err := listenConfig.Listen(context.Background(), "tcp", netip.AddrPortFrom(ip, port).String())
			if err != nil {
				return err
			}
			ln = l.(*net.TCPListener)
			return nil
		}
	}
	ip, pa, port, err := s.acquireAny(fam, bindOn)
	if err != nil {
		s.quota.Release(c.UserID)
		s.countAttempt(metrics.AttemptCapacity)
		return nil, nil, err
	}
	user := c.UserID
	r := &tcpRelay{
		ln: ln, srv: s, user: user,
		local:      netip.AddrPortFrom(ip, port),
		advertised: netip.AddrPortFrom(s.advertise(ip), port),
		created:    time.Now(),
		done:       make(chan struct{}),
		id:         s.relaySeq.Add(1)<<16 | uint64(port),
	}
	r.release = func() {
		pa.Release(port)
		s.quota.Release(user)
	}
	s.mu.Lock()
	s.tcpRelays[r.advertised] = r
	s.open++
	s.mu.Unlock()
	return r, r.Addr(), nil
}

// AllocateConn connects to a peer for a Connect request (RFC 6062 §5.2: "The local endpoint
// is the relayed transport address associated with the allocation"). permitPeer has already
// refused what the policy refuses (403); this checks again, so that no SYN ever leaves for
// a refused peer whatever path pion took, and counts the connection against the limits. pion
// answers any error here 447.
func (g *relayGen) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	s := g.srv
	adv, ok1 := sock.AddrPortOf(c.LocalAddr)
	peer, ok2 := sock.AddrPortOf(c.RemoteAddr)
	if !ok1 || !ok2 {
		return nil, errNoTCPRelay
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	s.mu.Lock()
	r := s.tcpRelays[adv]
	s.mu.Unlock()
	if r == nil {
		return nil, errNoTCPRelay // a Connect on a UDP allocation
	}
	if s.peers.Load().Check(peer.Addr()) != policy.Allowed || !s.peerPortOK(peer) {
		s.slowStats.Drop(dataplane.DropPolicy)
		s.tcpStats.policy[metrics.TCPPolicyConnect].Add(1)
		return nil, errPeerRefused
	}
	if limit, ok := s.tcpConns.acquire(s, r); !ok {
		s.tcpStats.refuse(limit)
		return nil, errTCPRelayLimit
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(r.local), Timeout: s.cfg.TCPConnectTimeout, Control: reusePort}
	network := "tcp4"
	if peer.Addr().Is6() {
		network = "tcp6"
	}
	s.tcpStats.dials.Add(1)
	conn, err := d.Dial(network, peer.String())
	if err != nil {
		s.tcpConns.releaseSlot(r)
		return nil, fmt.Errorf("relay: connect %s from %s: %w", peer, r.local, err)
	}
	return s.newPeerConn(r, conn.(*net.TCPConn), peer), nil
}

// listenConfig binds relayed TCP addresses with SO_REUSEPORT, which the connections to
// peers bound to the same address need (Linux refuses to bind a port a listening socket
// holds otherwise). The port is ours: portalloc handed it out.
var listenConfig = net.ListenConfig{Control: reusePort}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	return errors.Join(err, serr)
}

// tcpRelayClosed forgets a closed relayed TCP address.
func (s *Server) tcpRelayClosed(r *tcpRelay) {
	s.mu.Lock()
	if s.tcpRelays[r.advertised] == r {
		delete(s.tcpRelays, r.advertised)
	}
	s.openDoneLocked()
	s.mu.Unlock()
}

// onTCPAllocationCreated counts a TCP allocation; onAllocationCreated calls it for a TCP
// relayed address.
func (s *Server) onTCPAllocationCreated(k allocKey, rap netip.AddrPort, userID string) {
	s.mu.Lock()
	r := s.tcpRelays[rap]
	if r != nil {
		r.key = k
		r.transport = int(metrics.TransportTCP)
		if s.tlsAddrs[k.dst] {
			r.transport = int(metrics.TransportTLS)
		}
		s.tcpAllocs[k] = r
	}
	s.mu.Unlock()
	if r == nil {
		return
	}
	s.allocCount[r.transport][familyOf(rap.Addr())].Add(1)
	if m := s.cfg.Metrics; m != nil {
		m.AllocationAttempt(metrics.AttemptOK)
	}
	s.logEvent("allocation created", slog.String("client", k.src.String()), slog.String("transport", metrics.Transport(r.transport).String()),
		slog.String("user", userID), slog.String("relay", "tcp:"+rap.String()))
}

// onTCPAllocationDeleted reports whether k was a TCP allocation, and uncounts it.
func (s *Server) onTCPAllocationDeleted(k allocKey, userID string) bool {
	s.mu.Lock()
	r := s.tcpAllocs[k]
	delete(s.tcpAllocs, k)
	s.mu.Unlock()
	if r == nil {
		return false
	}
	s.allocCount[r.transport][familyOf(r.advertised.Addr())].Add(-1)
	life := time.Since(r.created)
	reason := endReason(r.ending.Load())
	if m := s.cfg.Metrics; m != nil {
		m.AllocationEnded(life)
		m.AllocationEndedBy(reason.label())
	}
	s.noteEnded(k, reason) // mismatch.go
	s.logEvent("allocation deleted", slog.String("client", k.src.String()), slog.String("user", userID),
		slog.String("relay", "tcp:"+r.advertised.String()), slog.String("lifetime", life.Round(time.Millisecond).String()), slog.String("reason", reason.label()))
	return true
}

// peerKey names a peer connection by its two ends, which is all pion's wrapper of it shows.
type peerKey struct{ local, remote netip.AddrPort }

func peerKeyOf(local, remote net.Addr) (peerKey, bool) {
	l, ok1 := sock.AddrPortOf(local)
	r, ok2 := sock.AddrPortOf(remote)
	return peerKey{netip.AddrPortFrom(l.Addr().Unmap(), l.Port()), netip.AddrPortFrom(r.Addr().Unmap(), r.Port())}, ok1 && ok2
}

// peerConn is one peer data connection of a TCP allocation.
type peerConn struct {
	*net.TCPConn             // Static.
	r            *tcpRelay   // Static.
	key          peerKey     // Static.
	timer        *time.Timer // the ConnectionBind timeout. Static.
	bound        atomic.Bool // claimed by a ConnectionBind
	active       atomic.Int64
	closeOnce    sync.Once
	bytes        [metrics.NumDirections]atomic.Uint64 // relayed, for the admin API
}

// count adds n bytes relayed in direction d to the metrics and the admin API's counts.
func (pc *peerConn) count(s *Server, d metrics.Direction, n int64) {
	s.slowStats.AddBytes(d, metrics.PathTCP, n)
	pc.bytes[d].Add(uint64(n))
	pc.r.bytes[d].Add(uint64(n))
}

// newPeerConn registers c, whose slot of the limits is held, and starts its ConnectionBind
// timer.
func (s *Server) newPeerConn(r *tcpRelay, c *net.TCPConn, peer netip.AddrPort) *peerConn {
	k, _ := peerKeyOf(c.LocalAddr(), c.RemoteAddr())
	pc := &peerConn{TCPConn: c, r: r, key: k}
	pc.active.Store(time.Now().UnixNano())
	// RFC 6062 §5.3: "If no ConnectionBind request associated with this peer data connection
	// is received after 30 seconds, the peer data connection MUST be closed."
	// Armed only once pc.timer is set: the function reads it (Close).
	pc.timer = time.AfterFunc(time.Duration(math.MaxInt64), func() {
		if !pc.bound.Load() {
			s.tcpStats.bindTimeout.Add(1)
			_ = pc.Close()
		}
	})
	pc.timer.Reset(s.cfg.TCPConnectionBindTimeout)
	s.tcpConns.add(pc)
	return pc
}

// Close closes the connection and gives its slot of the limits back.
func (c *peerConn) Close() error {
	c.closeOnce.Do(func() {
		c.timer.Stop()
		c.r.srv.tcpConns.remove(c)
	})
	return c.TCPConn.Close()
}

// tcpConnTable holds the live peer connections and their counts.
type tcpConnTable struct {
	mu    sync.Mutex
	byKey map[peerKey]*peerConn // Guarded by mu.
	users map[string]int        // live connections per user. Guarded by mu.
	total int                   // slots held, connected or connecting. Guarded by mu.
}

func within(limit, n int) bool { return limit < 0 || n < limit }

// acquire takes a slot for one more peer connection of r, if the limits allow; if not, it
// returns the limit that refused it.
func (t *tcpConnTable) acquire(s *Server, r *tcpRelay) (metrics.TCPLimit, bool) {
	c := &s.cfg
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !within(c.MaxTCPRelayConns, t.total):
		return metrics.TCPLimitTotal, false
	case !within(c.MaxTCPRelayConnsPerUser, t.users[r.user]):
		return metrics.TCPLimitUser, false
	case !within(c.MaxTCPRelayConnsPerAllocation, r.conns):
		return metrics.TCPLimitAllocation, false
	}
	if t.users == nil {
		t.users = map[string]int{}
	}
	t.total++
	t.users[r.user]++
	r.conns++
	return 0, true
}

// releaseSlot gives back a slot that got no connection.
func (t *tcpConnTable) releaseSlot(r *tcpRelay) {
	t.mu.Lock()
	t.releaseLocked(r)
	t.mu.Unlock()
}

func (t *tcpConnTable) releaseLocked(r *tcpRelay) {
	t.total--
	r.conns--
	if t.users[r.user]--; t.users[r.user] <= 0 {
		delete(t.users, r.user)
	}
}

func (t *tcpConnTable) add(pc *peerConn) {
	t.mu.Lock()
	if t.byKey == nil {
		t.byKey = map[peerKey]*peerConn{}
	}
	t.byKey[pc.key] = pc
	t.mu.Unlock()
}

func (t *tcpConnTable) remove(pc *peerConn) {
	t.mu.Lock()
	if t.byKey[pc.key] == pc {
		delete(t.byKey, pc.key)
	}
	t.releaseLocked(pc.r)
	t.mu.Unlock()
}

// lookup finds the peer connection behind pion's wrapper of it.
func (t *tcpConnTable) lookup(w any) *peerConn {
	ends, ok := w.(interface {
		LocalAddr() net.Addr
		RemoteAddr() net.Addr
	})
	if !ok {
		return nil
	}
	k, ok := peerKeyOf(ends.LocalAddr(), ends.RemoteAddr())
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byKey[k]
}

// open returns the peer connections open (connected; not the dials in progress).
func (t *tcpConnTable) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// live returns the live peer connections in total and of user.
func (t *tcpConnTable) live(user string) (total, ofUser int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total, t.users[user]
}

// tcpStats counts what ended TCP relay connections other than their ends closing.
type tcpStats struct {
	bindTimeout atomic.Uint64                             // peer connections no ConnectionBind claimed in time
	idleTimeout atomic.Uint64                             // bound pairs closed idle
	overLimit   atomic.Uint64                             // peer connections refused by the limits
	dials       atomic.Uint64                             // connections to peers attempted (Connect)
	limit       [metrics.NumTCPLimits]atomic.Uint64       // overLimit by the limit that refused
	policy      [metrics.NumTCPPolicyStages]atomic.Uint64 // peer connections the peer policy refused, by stage
}

// refuse counts a peer connection the limit refused.
func (t *tcpStats) refuse(limit metrics.TCPLimit) {
	t.overLimit.Add(1)
	t.limit[limit].Add(1)
}

// addTo copies the counts to the metrics snapshot, with open peer connections.
func (t *tcpStats) addTo(sn *metrics.Snapshot, open int) {
	tr := &sn.TCPRelay
	tr.Conns = open
	tr.BindTimeouts = t.bindTimeout.Load()
	tr.IdleCloses = t.idleTimeout.Load()
	for i := range t.limit {
		tr.LimitRefused[i] = t.limit[i].Load()
	}
	for i := range t.policy {
		tr.PolicyRefused[i] = t.policy[i].Load()
	}
}

// countConnectRefusal counts a refusal by the peer policy of the request pion is handling
// for src if that request is a Connect (a CreatePermission or ChannelBind refusal is a drop
// with reason policy only).
func (s *Server) countConnectRefusal(src net.Addr) {
	g := &s.connects
	if g.live.Load() == 0 {
		return
	}
	g.mu.Lock()
	_, ok := g.m[src]
	g.mu.Unlock()
	if ok {
		s.tcpStats.policy[metrics.TCPPolicyConnect].Add(1)
	}
}

// The Connect requests in flight, for permitPeer: pion's PermissionHandler is told the peer's
// IP only, and the relay's own addresses are refused by port (peerPortOK). Keyed by the
// source address pion is given for the request, compared by identity, as caps.go does.
type connectGate struct {
	mu   sync.Mutex
	m    map[net.Addr]netip.AddrPort // Guarded by mu.
	live atomic.Int64                // len(m), read without mu
}

var connectRequest = stun.NewType(stun.MethodConnect, stun.ClassRequest).Value()

// noteConnect notes the peer a Connect request from src names (admitRequest).
func (s *Server) noteConnect(m []byte, src net.Addr) {
	if len(m) < stunHeaderSize || binary.BigEndian.Uint16(m[0:2]) != connectRequest {
		return
	}
	msg := &stun.Message{Raw: append([]byte(nil), m...)}
	if msg.Decode() != nil {
		return
	}
	var xa stun.XORMappedAddress
	if xa.GetFromAs(msg, stun.AttrXORPeerAddress) != nil {
		return // pion answers 400
	}
	ip, ok := netip.AddrFromSlice(xa.IP)
	if !ok {
		return
	}
	g := &s.connects
	g.mu.Lock()
	if g.m == nil || len(g.m) >= maxCapPending {
		g.m = map[net.Addr]netip.AddrPort{}
	}
	g.m[src] = netip.AddrPortFrom(ip.Unmap(), uint16(xa.Port))
	g.live.Store(int64(len(g.m)))
	g.mu.Unlock()
}

// connectPortOK is permitPeer's check of the port of a Connect request from src: a Connect to
// one of the relay's own services is refused (403) like a packet to one (peerPortOK). And a
// loopback peer, which only AllowLoopback lets through, is reachable over TCP from a loopback
// client only: AllowLoopback is for the all-loopback setup, and a TCP relay would otherwise
// open every TCP service of the relay's host on loopback to a remote client (the metrics and
// credential listeners among them, which the relay does not know).
func (s *Server) connectPortOK(src net.Addr) bool {
	g := &s.connects
	if g.live.Load() == 0 {
		return true
	}
	g.mu.Lock()
	ap, ok := g.m[src]
	g.mu.Unlock()
	if !ok {
		return true
	}
	client, _ := sock.AddrPortOf(src)
	if s.peerPortOK(ap) && (!ap.Addr().IsLoopback() || client.Addr().Unmap().IsLoopback()) {
		return true
	}
	s.slowStats.Drop(dataplane.DropPolicy)
	s.logInput(string(policy.ReasonLocal), "Connect to the relay's own service refused", "client", src.String(), "peer", ap.String())
	return false
}

// forgetConnect drops the note of the Connect request b (pion's answer to to) answers.
func (s *Server) forgetConnect(b []byte, to net.Addr) {
	g := &s.connects
	if g.live.Load() == 0 || len(b) < stunHeaderSize {
		return
	}
	var mt stun.MessageType
	mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	if mt.Method != stun.MethodConnect || (mt.Class != stun.ClassSuccessResponse && mt.Class != stun.ClassErrorResponse) {
		return
	}
	g.mu.Lock()
	delete(g.m, to)
	g.live.Store(int64(len(g.m)))
	g.mu.Unlock()
}

// tcpChunk bounds one splice (or copy) between two counts of the metrics and two checks of
// the idle timeout.
const tcpChunk = 256 << 10

// relayTCP moves the bytes of one direction of a bound pair, from src to dst, until src ends
// or either side fails: pion calls it (through framedConn's WriteTo and ReadFrom) once each
// way and closes both connections when the first returns. Between two plain TCP sockets
// net.TCPConn.ReadFrom splices through a pipe (splice(2): the bytes never enter user space);
// a TLS side is copied through buf. The pair is idle when neither way has moved a byte for
// TCPRelayIdleTimeout: each way's read deadline is that far ahead, and a way whose deadline
// passes looks at when the other last moved a byte before it gives up.
func (s *Server) relayTCP(pc *peerConn, dst, src net.Conn, d metrics.Direction) (int64, error) {
	idle := s.cfg.TCPRelayIdleTimeout
	dstTCP, _ := dst.(*net.TCPConn)
	srcTCP, _ := src.(*net.TCPConn)
	var lr io.LimitedReader
	var buf []byte
	if dstTCP == nil || srcTCP == nil {
		buf = make([]byte, 32<<10)
	}
	var total int64
	if idle <= 0 {
		_ = src.SetReadDeadline(time.Time{})
	}
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(idle))
		}
		var n int64
		var err error
		eof := false
		if buf == nil {
			lr = io.LimitedReader{R: srcTCP, N: tcpChunk}
			n, err = dstTCP.ReadFrom(&lr)
			eof = err == nil && lr.N > 0
		} else {
			var m int
			m, err = src.Read(buf)
			if m > 0 {
				var werr error
				m, werr = dst.Write(buf[:m])
				if werr != nil {
					err = werr
				}
			}
			n = int64(m)
			if errors.Is(err, io.EOF) {
				eof, err = true, nil
			}
		}
		if n > 0 {
			total += n
			pc.count(s, d, n)
			pc.active.Store(time.Now().UnixNano())
		}
		switch {
		case eof:
			return total, nil
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if n > 0 || time.Since(time.Unix(0, pc.active.Load())) < idle {
				continue
			}
			s.tcpStats.idleTimeout.Add(1)
		}
		return total, err
	}
}

// startRelay claims the peer connection behind pion's wrapper w for client data connection
// c (RFC 6062 §5.4: the ConnectionBind succeeded) and clears c's own deadlines, which
// relayTCP takes over. It returns nil when w is not a live peer connection.
func (c *framedConn) startRelay(w any) *peerConn {
	pc := c.srv.tcpConns.lookup(w)
	if pc == nil {
		return nil
	}
	if pc.bound.CompareAndSwap(false, true) {
		pc.timer.Stop()
	}
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return pc
}

// WriteTo is pion's copy of a bound client data connection to its peer connection w
// (io.Copy(peer, client) in pion's ConnectionBind handler): relayTCP moves the bytes, after
// any the client sent behind its ConnectionBind that framedConn holds.
func (c *framedConn) WriteTo(w io.Writer) (int64, error) {
	pc := c.startRelay(w)
	if pc == nil {
		return 0, errNoPeerConn
	}
	var sent int64
	if rest := c.in; len(rest) > 0 {
		c.in = nil
		n, err := pc.TCPConn.Write(rest)
		sent += int64(n)
		pc.count(c.srv, metrics.ClientToPeer, int64(n))
		if err != nil {
			return sent, err
		}
	}
	n, err := c.srv.relayTCP(pc, pc.TCPConn, c.Conn, metrics.ClientToPeer)
	return sent + n, err
}

// ReadFrom is pion's copy of peer connection r to the bound client data connection
// (io.Copy(client, peer)).
func (c *framedConn) ReadFrom(r io.Reader) (int64, error) {
	pc := c.startRelay(r)
	if pc == nil {
		return 0, errNoPeerConn
	}
	return c.srv.relayTCP(pc, c.Conn, pc.TCPConn, metrics.PeerToClient)
}

var errNoPeerConn = errors.New("relay: ConnectionBind: no such peer connection")

var connectionBindRequest = stun.NewType(stun.MethodConnectionBind, stun.ClassRequest).Value()

// isConnectionBind reports whether frame f is a ConnectionBind request.
func isConnectionBind(f []byte) bool {
	return len(f) >= stunHeaderSize && binary.BigEndian.Uint16(f[0:2]) == connectionBindRequest
}

// connIDTable remembers which control connection each CONNECTION-ID was issued on (in a
// Connect success response or a ConnectionAttempt indication), so that the ConnectionBind
// naming it, sent on a new data connection with the control connection's nonce, finds the
// nonce's 5-tuple (nonce.go binds nonces to theirs). An entry is taken by the ConnectionBind
// that uses it; entries no ConnectionBind takes are dropped when the table outgrows
// maxCapPending.
type connIDTable struct {
	mu sync.Mutex
	m  map[uint32]netip.AddrPort // client address of the control connection. Guarded by mu.
}

var (
	connectSuccess    = stun.NewType(stun.MethodConnect, stun.ClassSuccessResponse).Value()
	connectionAttempt = stun.NewType(stun.MethodConnectionAttempt, stun.ClassIndication).Value()
)

// noteConnectionID notes the CONNECTION-ID of b, a message pion writes to client.
func (s *Server) noteConnectionID(b []byte, client netip.AddrPort) {
	if len(b) < stunHeaderSize {
		return
	}
	if t := binary.BigEndian.Uint16(b[0:2]); t != connectSuccess && t != connectionAttempt {
		return
	}
	off, l, ok := findAttr(b, stun.AttrConnectionID)
	if !ok || l != 4 {
		return
	}
	id := binary.BigEndian.Uint32(b[off:])
	g := &s.connIDs
	g.mu.Lock()
	if g.m == nil || len(g.m) >= maxCapPending {
		g.m = map[uint32]netip.AddrPort{}
	}
	g.m[id] = client
	g.mu.Unlock()
}

// controlTupleOf returns the client address of the control connection the CONNECTION-ID of
// m, a ConnectionBind request, was issued on, and forgets it.
func (s *Server) controlTupleOf(m []byte) (netip.AddrPort, bool) {
	if !isConnectionBind(m) {
		return netip.AddrPort{}, false
	}
	off, l, ok := findAttr(m, stun.AttrConnectionID)
	if !ok || l != 4 {
		return netip.AddrPort{}, false
	}
	id := binary.BigEndian.Uint32(m[off:])
	g := &s.connIDs
	g.mu.Lock()
	defer g.mu.Unlock()
	ap, ok := g.m[id]
	delete(g.m, id)
	return ap, ok
}

// refuseTCPAllocate answers 400 to m, an Allocate request for a TCP relayed address, if RFC
// 6062 §5.1 refuses it, and reports whether it did: "If the client connection transport is
// not TCP or TLS, the server MUST reject the request with a 400 (Bad Request) error", and "If
// the request contains the DONT-FRAGMENT, EVEN-PORT, or RESERVATION-TOKEN attribute, the
// server MUST reject the request with a 400 (Bad Request) error." pion does neither: it would
// bind a relayed address no ConnectionBind can reach, or reserve a UDP port for a TCP one.
// The answer counts against ErrorRate like pion's error answers.
func (s *Server) refuseTCPAllocate(m []byte, from netip.AddrPort, r replier) bool {
	off, l, ok := findAttr(m, stun.AttrRequestedTransport)
	if !ok || l < 1 || m[off] != tcpProtocol {
		return false
	}
	stream, _ := r.tupleEnd()
	_, _, df := findAttr(m, stun.AttrDontFragment)
	_, _, even := findAttr(m, stun.AttrEvenPort)
	_, _, token := findAttr(m, stun.AttrReservationToken)
	if stream && !df && !even && !token {
		return false
	}
	s.countAttempt(metrics.AttemptBadRequest)
	if lim := s.errLimit; lim != nil && !lim.Allow(from.Addr(), time.Now().UnixNano()) {
		s.slowStats.Drop(dataplane.DropRateLimited)
		return true
	}
	var tid [stun.TransactionIDSize]byte
	copy(tid[:], m[8:stunHeaderSize])
	resp, err := stun.Build(&stun.Message{TransactionID: tid},
		stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeBadRequest, Reason: []byte("TCP relay: over TCP or TLS, without DONT-FRAGMENT, EVEN-PORT or RESERVATION-TOKEN")},
		stun.Fingerprint)
	if err == nil {
		r.reply(from, resp.Raw)
	}
	return true
}

// tcpProtocol is REQUESTED-TRANSPORT's protocol number for TCP (RFC 6062 §6.1).
const tcpProtocol = 6

// closeRefusedTCPPeers closes the peer connections of TCP allocations whose peer pol refuses
// (SetPeerPolicy), and returns how many.
func (s *Server) closeRefusedTCPPeers(pol *policy.Policy) int {
	t := &s.tcpConns
	var refused []*peerConn
	t.mu.Lock()
	for k, pc := range t.byKey {
		if pol.Check(k.remote.Addr()) != policy.Allowed {
			refused = append(refused, pc)
		}
	}
	t.mu.Unlock()
	for _, pc := range refused {
		_ = pc.Close()
	}
	s.tcpStats.policy[metrics.TCPPolicyReload].Add(uint64(len(refused)))
	return len(refused)
}
