//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/portalloc"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
)

// relayGen is our RelayAddressGenerator: relay sockets bound to ports drawn by portalloc from
// the edge range, read by the workers, advertised through the external-ip mapping.
type relayGen struct {
	srv  *Server
	next atomic.Uint32 // round-robin over workers
}

var _ turn.RelayAddressGenerator = (*relayGen)(nil)

func (g *relayGen) Validate() error { return nil }

// AllocatePacketConn binds a relay socket for a UDP allocation.
//
// pion asks in three shapes. A plain Allocate: any free port. EVEN-PORT (RFC 8656 §7.2:
// "the server checks that it can satisfy the request (i.e., can allocate a relayed transport
// address as described below)"): pion first probes for an even port with an empty UserID and
// closes what it got, then — after its quota check (QuotaHandler, 486) — asks for that port;
// we answer the probe without touching a port and take a pair (the even port held, the next
// one reserved for 30 s) only for the request that follows, after our own quota check, so
// that a refused Allocate reserves nothing. RESERVATION-TOKEN: pion asks for the reserved odd
// port, which RedeemPort hands out once.
func (g *relayGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.srv
	if s.draining.Load() {
		s.countAttempt(metrics.AttemptDraining)
		return nil, nil, ErrDraining
	}
	fam := 0
	if c.Network == "udp6" {
		fam = 1
	}
	ips := s.relayIPs[fam]
	if len(ips) == 0 {
		s.countAttempt(metrics.AttemptBadRequest)
		return nil, nil, fmt.Errorf("relay: no relay address for %s (set relay-ip)", c.Network)
	}
	// EVEN-PORT and RESERVATION-TOKEN pairs live on the family's first relay address: pion
	// names the reserved port only, not its address.
	ip := ips[0]
	pa := s.ports[ip]
	if c.UserID == "" {
		// pion's EVEN-PORT probe, before pion's quota check: it touches no port. Any even
		// port of the range tells the request that follows to take a pair; whether one is
		// free is decided there (508 if none), after the quota checks.
		lo, hi := pa.Range()
		port := lo + lo%2
		if port == 0 || port >= hi { // no pair fits in the range
			s.countAttempt(metrics.AttemptCapacity)
			return nil, nil, portalloc.ErrExhausted
		}
		return probeConn{}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)), nil
	}
	if ok, total := s.quota.Acquire(c.UserID); !ok {
		if total {
			s.countAttempt(metrics.AttemptCapacity)
		} else {
			s.countAttempt(metrics.AttemptQuota)
		}
		return nil, nil, errQuota
	}
	var fd int
	bindOn := func(ip netip.Addr) func(port uint16) error {
		return func(port uint16) error {
			var err error
			fd, err = sock.OpenUDP(netip.AddrPortFrom(ip, port), false)
			return err
		}
	}
	var port uint16
	var err error
	switch {
	case c.RequestedPort == 0:
		ip, pa, port, err = s.acquireAny(fam, bindOn)
	case c.RequestedPort%2 == 1:
		port = uint16(c.RequestedPort)
		err = pa.RedeemPort(port, bindOn(ip))
	default:
		// EVEN-PORT (the probe's even port): a pair now, any free one — the probe kept
		// nothing, and pion reserves the port after the one we return. AcquireEven skips
		// ports held by other processes.
		port, _, err = pa.AcquireEven(bindOn(ip))
	}
	if err != nil {
		s.quota.Release(c.UserID)
		if errors.Is(err, portalloc.ErrExhausted) {
			s.log.Warn("relay range exhausted: allocation refused with 508", "ip", ip.String())
		}
		s.countAttempt(metrics.AttemptCapacity)
		return nil, nil, err
	}
	w := s.workers[int(g.next.Add(1))%len(s.workers)]
	user := c.UserID
	rc := &relayConn{
		Relay: dataplane.NewRelay(fd, relayHandoff, s.cfg.AllocationBandwidth),
		srv:   s, w: w,
		local:      netip.AddrPortFrom(ip, port),
		advertised: netip.AddrPortFrom(s.advertise(ip), port),
		created:    time.Now(),
		seq:        s.relaySeq.Add(1),
	}
	rc.release = func() {
		pa.Release(port)
		s.quota.Release(user)
	}
	s.mu.Lock()
	s.relays[rc.advertised] = rc
	s.open++
	s.mu.Unlock()
	if !w.AddRelay(rc.Relay) {
		_ = rc.Close()
		return nil, nil, errWorkerStopped
	}
	return rc, sock.UDPAddr(rc.advertised), nil
}

// relayHandoff is how many peer datagrams off a bound channel (ICE checks before the
// ChannelBind, Data indications, and everything a TCP client's allocation receives) may wait
// for pion per allocation. pion's reader drains them as they come, but on a loaded machine it
// waits for the CPU, and what arrives meanwhile waits here: at 32, a TCP client receiving 200
// datagrams a second lost every one that came in a stall of its reader longer than 160 ms
// (queue_full), while the socket's own 4 MB buffer stood empty (TestInteropCoturnUclient
// under load). The queue grows only as datagrams wait (HandoffQueue), so an idle allocation
// pays nothing for the depth; a stalled one holds up to 256 pooled 2 kB buffers.
const relayHandoff = 256

var errQuota = errors.New("relay: allocation quota reached")

func (s *Server) countAttempt(result string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.AllocationAttempt(result)
	}
}

// probeConn answers pion's EVEN-PORT probe: pion only reads the address and closes it.
type probeConn struct{ net.PacketConn }

func (probeConn) Close() error { return nil }

// acquireAny takes a free port on one of the family's relay addresses: the search starts at
// the address after the one the previous allocation started at and moves on only when an
// address's range is exhausted, so allocations spread evenly over the addresses and a full
// address costs one ErrExhausted. bindOn(ip) binds the socket on ip.
func (s *Server) acquireAny(fam int, bindOn func(netip.Addr) func(uint16) error) (netip.Addr, *portalloc.Allocator, uint16, error) {
	ips := s.relayIPs[fam]
	start := int(s.relayNext[fam].Add(1)) % len(ips)
	var err error
	for i := range ips {
		ip := ips[(start+i)%len(ips)]
		pa := s.ports[ip]
		var port uint16
		if port, err = pa.Acquire(bindOn(ip)); err == nil || !errors.Is(err, portalloc.ErrExhausted) {
			return ip, pa, port, err
		}
	}
	return ips[start], s.ports[ips[start]], 0, err
}
