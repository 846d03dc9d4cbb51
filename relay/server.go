//go:build linux

package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/admin"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/portalloc"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/kfast"
	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/internal/uring"
	"github.com/avedge/avedge/relay/policy"
)

// Server is a running relay: listeners, workers, and the pion/turn control plane.
//
// Who touches what. "Static" fields are written by New before it returns and only read
// after. The control plane is pion's goroutines: its read loops (which call the facades,
// the AuthHandler, the PermissionHandler and the RelayAddressGenerator) and its allocation
// timers (which call the EventHandler and relayConn.Close). The data plane is the workers,
// which see only s.fast and what the facades embed (dataplane.Listener, dataplane.Relay),
// never the Server. Scrapes call snapshot from the metrics handler's goroutine.
//
// Locks: s.mu guards the maps of live relay sockets and allocations and the count of open
// relay sockets; each allocation's own lock serialises the fast-path table's writers for it.
// The two are never held together: the EventHandler looks an allocation up under s.mu,
// releases it, then updates the table (allocOf). Neither is taken by a worker.
//
// Goroutines: New starts one per worker; Close stops each and waits for it (Worker.Close).
// Close starts none.
type Server struct {
	cfg Config       // Static.
	log *slog.Logger // Static.

	turn         *turn.Server                        // Static (nil until New has started pion). Closed by Close.
	workers      []*dataplane.Worker                 // Static. Read by Close and snapshot.
	kernel       *kfast.Offload                      // the kernel fast path (offload.go); nil: none. Static after New.
	kmirror      *dataplane.Kernel                   // its mirror of the table. Static after New.
	listeners    []*listenerGroup                    // UDP listen addresses. Static.
	lisByAddr    map[netip.AddrPort]*listenerGroup   // Static. Read by the EventHandler.
	streams      []*streamListener                   // TCP and TLS listeners. Static.
	conns        *connLimit                          // caps on TCP and TLS connections. Static (locks itself).
	tlsAddrs     map[netip.AddrPort]bool             // Static. Read by the EventHandler.
	ports        map[netip.Addr]*portalloc.Allocator // by relay IP. Static (the allocators lock themselves).
	relayIPs     [2][]netip.Addr                     // [family] relay IPs, in the order given (none: empty). Static.
	relayNext    [2]atomic.Uint32                    // [family] where the next allocation's search for a port starts
	peers        atomic.Pointer[policy.Policy]       // Written by SetPeerPolicy (any goroutine); read by permit.
	ownIPs       []netip.Addr                        // relay and advertised addresses. Static. Read by peerPortOK.
	quota        *policy.Quota                       // Static (locks itself).
	fast         *dataplane.Table                    // Static. Written by the EventHandler; read lock-free by workers.
	allocLimit   *policy.Limiter                     // nil: unlimited. Static (locks itself). Used by admitRequest.
	authLimit    *policy.Limiter                     // nil: unlimited. Static (locks itself). Used by passAnswer.
	errLimit     *policy.Limiter                     // other error answers; nil: unlimited. Static (locks itself). Used by passAnswer.
	bindLimit    *policy.Limiter                     // Binding answers; nil: unlimited. Static (locks itself). Used by passAnswer.
	lockout      *policy.Lockout                     // static users. Static (locks itself). Used by admitRequest and authenticate.
	logs         *logSampler                         // lines input causes (logInput). Static (locks itself).
	nonces       nonceSigner                         // Static. Used by the facades (nonce.go).
	pionNonce    atomic.Pointer[pionNonce]           // the last nonce pion issued. Written by passAnswer, read by admitRequest.
	newWork      chan struct{}                       // tokens: shards handling new work at once (udp.go). Static.
	requestLimit *policy.Limiter                     // STUN requests of clients without an allocation; nil: unlimited. Static (locks itself). Used by the workers.
	loop         DataPath                            // the workers' loop (io_uring or epoll). Static.
	started      time.Time                           // Static.
	relaySeq     atomic.Uint64                       // numbers relay sockets (relayConn.seq). Used by AllocatePacketConn.
	revoked      atomic.Pointer[admin.Revocations]   // refused credentials; nil: none. Written by SetRevocations; read by authenticate.

	mu      sync.Mutex
	relays  map[netip.AddrPort]*relayConn // by advertised address. Guarded by mu. Written by AllocatePacketConn and relayClosed.
	allocs  map[allocKey]*allocation      // every live allocation. Guarded by mu. Written by the EventHandler.
	open    int                           // relayConns and tcpRelays not yet closed. Guarded by mu.
	drained chan struct{}                 // made by Close, closed once open is 0. Guarded by mu.

	// TCP allocations (tcprelay.go).
	tcpRelays map[netip.AddrPort]*tcpRelay // by advertised address. Guarded by mu. Written by AllocateListener and tcpRelayClosed.
	tcpAllocs map[allocKey]*tcpRelay       // live TCP allocations. Guarded by mu. Written by the EventHandler.
	tcpConns  tcpConnTable                 // peer connections of TCP allocations (locks itself).
	tcpStats  tcpStats                     // atomics.
	ended     endedTuples                  // 5-tuples of allocations an operator ended (mismatch.go).
	connects  connectGate                  // Connect requests in flight (locks itself). Written by admitRequest, read by permitPeer.
	connIDs   connIDTable                  // CONNECTION-IDs issued (locks itself). Written by passAnswer, read by bindRequestNonce.

	precheck   precheckCache       // locks itself. Written by admitRequest, taken by authenticate.
	bindKeys   keyCache            // locks itself. Written by authenticate, taken by passAnswer.
	caps       capGate             // locks itself. Written by admitRequest and authenticate, read by permitPeer, taken by passAnswer.
	slowStats  dataplane.SlowStats // atomics. Written by the facades and permit; read by snapshot.
	allocCount [3][2]atomic.Int64  // [transport][family]. Written by the EventHandler; read by snapshot.
	permCount  atomic.Int64        // Written by the EventHandler; read by snapshot.
	chanCount  atomic.Int64        // Written by the EventHandler; read by snapshot.

	streamStats streamStats // atomics. Written by the stream listeners and their connections.

	draining  atomic.Bool // Set by Drain and Close; read by the facades, relaygen, Ready and snapshot.
	closed    atomic.Bool // Set by Close; read by Ready.
	closeOnce sync.Once
}

// allocKey is pion's 5-tuple of an allocation (the protocol is implied by the listener).
type allocKey struct{ src, dst netip.AddrPort }

// New binds every listener and relay range and starts serving. Errors name the address or
// setting that failed.
func New(cfg Config) (*Server, error) {
	c := cfg.withDefaults()
	s := &Server{
		cfg: c, log: c.Logger, logs: newLogSampler(nil),
		lisByAddr: map[netip.AddrPort]*listenerGroup{},
		tlsAddrs:  map[netip.AddrPort]bool{},
		ports:     map[netip.Addr]*portalloc.Allocator{},
		relays:    map[netip.AddrPort]*relayConn{},
		allocs:    map[allocKey]*allocation{},
		tcpRelays: map[netip.AddrPort]*tcpRelay{},
		tcpAllocs: map[allocKey]*tcpRelay{},
		fast:      dataplane.NewTable(),
		quota:     policy.NewQuota(c.UserQuota, c.MaxAllocations),
		conns:     newConnLimit(c.MaxStreamConns, c.MaxStreamConnsPerSource),
	}
	s.precheck.init()
	s.nonces = newNonceSigner(c.nonceClock)
	if err := c.checkDescriptors(); err != nil {
		return nil, err
	}
	if err := s.setupRelayIPs(); err != nil {
		return nil, err
	}
	// The relay's own addresses are not refused by the permission policy: when both ends of a
	// call use relay candidates of this relay, each one's peer is the other's relayed address,
	// on our own IP. Their ports are checked per packet instead (peerPortOK).
	for _, ip := range c.RelayIPs {
		s.ownIPs = append(s.ownIPs, ip.Unmap())
		if ext, ok := c.ExternalIPs[ip]; ok {
			s.ownIPs = append(s.ownIPs, ext.Unmap())
		}
	}
	s.SetPeerPolicy(c.Peers)
	s.allocLimit = newRateLimit(c.AllocateRate)
	s.authLimit = newRateLimit(c.UnauthorizedRate)
	s.errLimit = newRateLimit(c.ErrorRate)
	s.bindLimit = newRateLimit(c.BindingRate)
	s.lockout = policy.NewLockout(c.StaticUserFailures, c.StaticUserLockout, 65536)
	s.requestLimit = newRateLimit(c.RequestRate)
	s.newWork = make(chan struct{}, c.NewWorkShards)

	n := c.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	ok := false
	defer func() {
		if !ok {
			s.teardown()
		}
	}()
	hold := 0 // ms; -1: for as long as it takes
	if runtime.GOMAXPROCS(0) > n {
		switch {
		case c.IdleHold == 0:
			hold = -1
		case c.IdleHold > 0:
			hold = int((c.IdleHold + time.Millisecond - 1) / time.Millisecond)
		}
	}
	loop, err := ParseDataPath(string(c.DataPath))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	kernelPath := loop
	switch loop {
	case DataPathAuto, DataPathOffload:
		loop = DataPathIOUring
		if err := uring.Usable(); err != nil {
			s.log.Info("io_uring unavailable; forwarding with epoll", "reason", err)
			loop = DataPathEpoll
		}
	case DataPathIOUring:
		if err := uring.Usable(); err != nil {
			return nil, fmt.Errorf("relay: data path io_uring: %w (use data path epoll or auto)", err)
		}
	}
	s.loop, s.started = loop, time.Now()
	s.log.Info("forwarding loops", "workers", n, "data-path", string(loop), "hold-scheduler-slot", hold != 0)
	for i := 0; i < n; i++ {
		w, err := dataplane.NewWorker(i, dataplane.Config{
			Table: s.fast, Log: s.log, HoldMs: hold, UseUring: loop == DataPathIOUring,
			RequestLimit: s.requestLimit, BindingLimit: s.bindLimit, Challenge: s.challenge,
		})
		if err != nil {
			return nil, fmt.Errorf("relay: worker %d: %w", i, err)
		}
		s.workers = append(s.workers, w)
	}
	turnCfg := turn.ServerConfig{
		Realm:              c.Realm,
		LoggerFactory:      pionLogger{log: s.log, sample: s.logs},
		EventHandler:       s.eventHandler(),
		ChannelBindTimeout: c.ChannelLifetime,
		PermissionTimeout:  c.PermissionLifetime,
		AllocationLifetime: c.AllocationLifetime,
		QuotaHandler:       func(user, _ string, _ net.Addr) bool { return c.UserQuota <= 0 || s.quota.Live(user) < c.UserQuota }, // 486 (RFC 8656 §7.2 step 7); AllocatePacketConn enforces both caps
	}
	if c.Validator != nil {
		turnCfg.AuthHandler = s.authenticate
	}
	gen := &relayGen{srv: s}
	if err := c.checkListenPorts(); err != nil {
		return nil, err
	}
	for _, l := range c.Listeners {
		if l.ProxyProtocol && l.Network == UDP {
			return nil, fmt.Errorf("relay: listener %s %s: the PROXY protocol is for TCP and TLS listeners", l.Network, l.Addr)
		}
		if l.ProxyProtocol && len(c.ProxyProtocolFrom) == 0 {
			return nil, fmt.Errorf("relay: listener %s %s: PROXY protocol without ProxyProtocolFrom: no load balancer may connect", l.Network, l.Addr)
		}
	}
	for _, l := range c.Listeners {
		switch l.Network {
		case UDP:
			g, err := s.listenUDP(l.Addr)
			if err != nil {
				return nil, err
			}
			// One pion read loop and allocation manager per shard, all on the same address:
			// pion's nonces are server-wide, and a client always reaches the same shard.
			for _, sh := range g.shards {
				turnCfg.PacketConnConfigs = append(turnCfg.PacketConnConfigs, turn.PacketConnConfig{
					PacketConn: sh, RelayAddressGenerator: gen, PermissionHandler: s.permitPeer,
				})
			}
		case TCP, TLS:
			ln, err := s.listenStream(l)
			if err != nil {
				return nil, err
			}
			turnCfg.ListenerConfigs = append(turnCfg.ListenerConfigs, turn.ListenerConfig{
				Listener: ln, RelayAddressGenerator: gen, PermissionHandler: s.permitPeer,
			})
		default:
			return nil, fmt.Errorf("relay: listener %s: unknown transport %q (want udp, tcp or tls)", l.Addr, l.Network)
		}
	}
	if kernelPath == DataPathAuto || kernelPath == DataPathOffload {
		if err := s.startKernel(kernelPath); err != nil {
			return nil, err
		}
	}
	for _, w := range s.workers {
		w.Start()
	}
	ts, err := turn.NewServer(turnCfg)
	if err != nil {
		return nil, fmt.Errorf("relay: start pion/turn: %w", err)
	}
	s.turn = ts
	if c.Metrics != nil {
		c.Metrics.SetSource(metrics.SourceFunc(s.snapshot))
	}
	ok = true
	for _, l := range s.Addrs() {
		s.log.Info("listening", "transport", string(l.Network), "addr", l.Addr.String(), "proxy-protocol", l.ProxyProtocol)
	}
	for ip, a := range s.ports {
		min, max := a.Range()
		s.log.Info("relay range", "ip", ip.String(), "advertised", s.advertise(ip).String(), "min-port", min, "max-port", max)
	}
	return s, nil
}

func (s *Server) setupRelayIPs() error {
	for _, ip := range s.cfg.RelayIPs {
		ip = ip.Unmap()
		fam := familyOf(ip)
		if _, dup := s.ports[ip]; dup {
			return fmt.Errorf("relay: relay-ip %s: given twice", ip)
		}
		if ip.IsUnspecified() {
			return fmt.Errorf("relay: relay-ip %s: give the address relay sockets bind to, not the wildcard", ip)
		}
		var opts []portalloc.Option
		if q := s.cfg.PortQuarantine; q != 0 {
			if q < 0 {
				q = 0
			}
			opts = append(opts, portalloc.WithQuarantine(q), portalloc.WithLogger(s.log))
		}
		a, err := portalloc.New(s.cfg.MinPort, s.cfg.MaxPort, opts...)
		if err != nil {
			return fmt.Errorf("relay: relay range: %w", err)
		}
		s.relayIPs[fam] = append(s.relayIPs[fam], ip)
		s.ports[ip] = a
	}
	return nil
}

func familyOf(ip netip.Addr) int {
	if ip.Unmap().Is4() {
		return int(metrics.FamilyIPv4)
	}
	return int(metrics.FamilyIPv6)
}

func (s *Server) advertise(ip netip.Addr) netip.Addr {
	if ext, ok := s.cfg.ExternalIPs[ip]; ok {
		return ext
	}
	return ip
}

// handoffQueueLen is the length of each listener shard's hand-off queue (and of its priority
// lane).
const handoffQueueLen = 1024

// listenUDP opens one SO_REUSEPORT socket per worker on addr.
func (s *Server) listenUDP(addr netip.AddrPort) (*listenerGroup, error) {
	g := &listenerGroup{Listener: dataplane.NewListener(uint16(len(s.listeners)), s.cfg.ControlShards, handoffQueueLen), addr: addr, srv: s}
	for _, q := range g.Shards {
		g.shards = append(g.shards, &listenerShard{HandoffQueue: q, g: g})
	}
	for i, w := range s.workers {
		bind := addr
		if i > 0 {
			bind = g.addr // port 0 resolved by the first socket
		}
		fd, err := sock.OpenUDP(bind, true)
		if err != nil {
			return nil, fmt.Errorf("relay: listen udp %s: %w", bind, err)
		}
		if i == 0 {
			local, err := sock.LocalAddrPort(fd)
			if err != nil {
				sock.Close(fd)
				return nil, fmt.Errorf("relay: listen udp %s: %w", bind, err)
			}
			g.addr = netip.AddrPortFrom(addr.Addr(), local.Port())
			g.sendFD = fd
		}
		if err := w.AddListener(fd, g.Listener); err != nil {
			return nil, fmt.Errorf("relay: listen udp %s: epoll: %w", bind, err)
		}
	}
	g.laddr = sock.UDPAddr(g.addr) // port 0 resolved
	s.listeners = append(s.listeners, g)
	s.lisByAddr[g.addr] = g
	return g, nil
}

func (s *Server) listenStream(l ListenerConfig) (net.Listener, error) {
	ln, err := net.Listen("tcp", l.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("relay: listen %s %s: %w", l.Network, l.Addr, err)
	}
	var cfg *tls.Config
	if l.Network == TLS {
		if s.cfg.TLS == nil {
			_ = ln.Close()
			return nil, fmt.Errorf("relay: listen tls %s: no certificate configured (set cert and pkey)", l.Addr)
		}
		s.tlsAddrs[netip.MustParseAddrPort(ln.Addr().String())] = true
		cfg = s.cfg.TLS
	}
	sl := newStreamListener(ln, s, cfg)
	sl.proxy = l.ProxyProtocol
	s.streams = append(s.streams, sl)
	return sl, nil
}

// Addrs returns the bound listener addresses (ports resolved), in configuration order.
func (s *Server) Addrs() []ListenerConfig {
	var out []ListenerConfig
	u, t := 0, 0
	for _, l := range s.cfg.Listeners {
		switch l.Network {
		case UDP:
			out = append(out, ListenerConfig{Network: UDP, Addr: s.listeners[u].addr})
			u++
		default:
			ap, _ := sock.AddrPortOf(s.streams[t].Addr())
			out = append(out, ListenerConfig{Network: l.Network, Addr: ap, ProxyProtocol: l.ProxyProtocol})
			t++
		}
	}
	return out
}

// Drain stops new allocations (they get 508) while live ones go on.
func (s *Server) Drain() {
	if !s.draining.Swap(true) {
		s.log.Info("draining: new allocations refused, live ones continue", "live", s.liveAllocations())
	}
}

// Ready reports whether the relay takes new allocations, with the reason when it does not.
func (s *Server) Ready() (bool, string) {
	switch {
	case s.closed.Load():
		return false, "closed"
	case s.draining.Load():
		return false, "draining"
	}
	return true, ""
}

func (s *Server) liveAllocations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.allocs) + len(s.tcpAllocs)
}

// Shutdown drains: no new allocations, and it waits until the live ones have ended or ctx
// is done, then closes everything. It returns ctx's error if allocations were cut short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var err error
	for s.liveAllocations() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-t.C:
			continue
		}
		break
	}
	return errors.Join(err, s.Close())
}

// Close stops serving at once: listeners close, every allocation ends and its relay port is
// released, the workers stop. It is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.draining.Store(true)
		if s.turn != nil {
			err = s.turn.Close()
		}
		// pion closes its allocations asynchronously, after its read loops end.
		s.mu.Lock()
		s.drained = make(chan struct{})
		if s.open == 0 {
			close(s.drained)
		}
		drained := s.drained
		s.mu.Unlock()
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
			s.log.Warn("relay: allocations still open 5s after close; closing their sockets")
			s.mu.Lock()
			var rest []io.Closer
			for _, rc := range s.relays {
				rest = append(rest, rc)
			}
			for _, r := range s.tcpRelays {
				rest = append(rest, r)
			}
			s.mu.Unlock()
			for _, rc := range rest {
				_ = rc.Close()
			}
		}
		s.teardown()
	})
	return err
}

func (s *Server) teardown() {
	for _, ln := range s.streams {
		_ = ln.Close()
	}
	for _, g := range s.listeners {
		_ = g.Close()
	}
	for _, w := range s.workers {
		w.Close()
	}
	if err := s.closeKernel(); err != nil {
		s.log.Warn("closing the kernel fast path", "err", err)
	}
}

// relayClosed forgets a relay socket that has closed.
func (s *Server) relayClosed(rc *relayConn) {
	s.mu.Lock()
	if s.relays[rc.advertised] == rc {
		delete(s.relays, rc.advertised)
	}
	s.openDoneLocked()
	s.mu.Unlock()
}

// openDoneLocked counts a relay socket or relayed TCP address closed, and tells Close when
// none is left.
func (s *Server) openDoneLocked() {
	s.open--
	if s.open == 0 && s.drained != nil {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// snapshot is the metrics Source: it sums the workers' and the slow path's counters.
func (s *Server) snapshot(sn *metrics.Snapshot) {
	for t := range s.allocCount {
		for f := range s.allocCount[t] {
			sn.Allocations[t][f] = int(s.allocCount[t][f].Load())
		}
	}
	sn.Permissions = int(s.permCount.Load())
	sn.Channels = int(s.chanCount.Load())
	for _, a := range s.ports {
		st := a.Stats()
		sn.Ports.Capacity += st.Capacity
		sn.Ports.Held += st.Held
		sn.Ports.Reserved += st.Reserved
		sn.Ports.Quarantined += st.Quarantined
	}
	for _, w := range s.workers {
		w.Stats().AddTo(sn)
	}
	s.slowStats.AddTo(sn)
	if s.kmirror != nil {
		s.kmirror.AddTo(sn)
	}
	sn.Draining = s.draining.Load()
	s.tcpStats.addTo(sn, s.tcpConns.open())
	s.streamStats.addTo(sn)
}

// Stats returns the same figures the metrics endpoint exposes (for tests and tools).
func (s *Server) Stats() metrics.Snapshot {
	sn := metrics.Snapshot{Drops: map[string]uint64{}}
	s.snapshot(&sn)
	return sn
}
