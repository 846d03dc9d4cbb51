package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// Network names a listener's transport.
type Network string

// Listener transports.
const (
	UDP Network = "udp"
	TCP Network = "tcp"
	TLS Network = "tls"
)

// ListenerConfig is one address clients reach the relay on.
type ListenerConfig struct {
	Network Network
	Addr    netip.AddrPort
	// ProxyProtocol (TCP and TLS only): every connection must come from an address of
	// Config.ProxyProtocolFrom and start with a PROXY protocol header, version 1 or 2
	// (before the TLS handshake); the client it names is the one the relay serves. A
	// connection from elsewhere, or without a valid header, is closed and counted.
	ProxyProtocol bool
}

// Config configures a Server. The zero value of every field but Validator is usable.
type Config struct {
	// Listeners are the addresses clients reach. Empty: UDP and TCP on 127.0.0.1:3478.
	Listeners []ListenerConfig
	// TLS is used by TLS listeners; required when one is configured.
	TLS *tls.Config

	// RelayIPs are the addresses relay sockets bind to, any number per family: an allocation
	// gets a port on the next address of its family that has one free (EVEN-PORT and
	// RESERVATION-TOKEN pairs: on the family's first address). Empty: 127.0.0.1.
	RelayIPs []netip.Addr
	// ExternalIPs maps a relay IP to the address advertised in XOR-RELAYED-ADDRESS, for an
	// edge behind a NAT (coturn's external-ip public/private). Empty: advertise the relay IP.
	ExternalIPs map[netip.Addr]netip.Addr
	// MinPort and MaxPort bound the edge range relay ports are drawn from. Zero: 50000–59999.
	MinPort, MaxPort uint16
	// PortQuarantine is how long a released relay port rests before it is handed out again.
	// Zero or negative: not at all, as avedge's port-quarantine 0 (whose default is 10 s).
	PortQuarantine time.Duration

	// Realm is the long-term credential realm. Empty: "avedge".
	Realm string
	// Validator checks usernames (TURN REST, keyed MRAS, static users). Required for TURN;
	// nil serves STUN Binding only.
	Validator *auth.Validator

	// Workers is the number of forwarding loops (each with its own SO_REUSEPORT socket per UDP
	// listen address). Zero or negative: DefaultWorkers(), as avedge's workers 0.
	Workers int

	// IdleHold is how long a worker keeps its scheduler slot (P) after its last packet before
	// it parks through the Go runtime. Holding saves the runtime's park/unpark and the
	// hand-offs that come with it on every wake-up at media packet rates; parking lets an idle
	// relay cost nothing (held, the runtime's 10 ms preemption of the worker and its monitor
	// thread still cost a little; README, "Performance", has both measured). It is used only
	// when GOMAXPROCS leaves at least one P for the rest of the program beside the workers
	// (cmd/avedge raises GOMAXPROCS by the number of workers, and holds for 1 s). Zero: hold
	// for as long as it takes; negative: never hold.
	IdleHold time.Duration

	// DataPath is how workers wait for and move packets: DataPathIOUring (one io_uring per
	// worker: multishot receives into provided buffers, sends and the wait in one system
	// call), DataPathEpoll (epoll_wait, recvmmsg, sendmmsg with UDP GSO), or DataPathAuto
	// (empty): io_uring when the kernel runs it (checked once by relaying a datagram over
	// loopback through a test ring), else epoll. io_uring needs Linux 6.1 and no seccomp
	// filter against it (Docker's default profile blocks it).
	//
	// DataPathAuto and DataPathOffload also relay channel-bound UDP traffic in the kernel (an
	// XDP program, package kfast) on the interfaces of the UDP listen and relay addresses
	// that allow it: a concrete address on an interface that forwards its family (or
	// OffloadGateway), and BPF available (CAP_BPF and CAP_NET_ADMIN, or root). On loopback
	// both do, with the tc variant on lo's tcx ingress, between loopback addresses (it leaves
	// other traffic to the next tcx program, so relays share lo): run as root on 127.0.0.1,
	// auto attaches it to the host's lo, and logs so and how not to (DataPathIOUring or
	// DataPathEpoll). Auto logs why when it cannot; offload refuses to start. The kernel
	// enforces each allocation's bandwidth cap with a token bucket of its own. The workers,
	// io_uring where it runs, else epoll, relay everything the kernel does not.
	DataPath DataPath
	// OffloadGateway makes the kernel fast path send every relayed packet back to the link
	// address it came from, instead of looking the next hop up in the routing table (which
	// needs forwarding enabled on the interface). Right only where every client and peer is
	// reached through one gateway.
	OffloadGateway bool

	// Peers is the peer policy: which peer addresses permissions may be granted for.
	Peers PeerPolicy

	// AllocationLifetime is the lifetime granted when a request names none. Zero: 10 minutes.
	// A LIFETIME the client asks for is granted up to one hour (RFC 8656's recommended
	// maximum, enforced by pion), whatever this says.
	AllocationLifetime time.Duration
	// PermissionLifetime: zero means pion's default (5 minutes, RFC 8656 §9).
	PermissionLifetime time.Duration
	// ChannelLifetime: zero means 10 minutes (RFC 8656 §12).
	ChannelLifetime time.Duration

	// MaxAllocations caps live allocations in total (508 beyond). Zero: every port the relay
	// has, the range's size (MaxPort − MinPort + 1) times the relay addresses; negative:
	// unlimited.
	MaxAllocations int
	// UserQuota caps live allocations per user (486 beyond). Zero: DefaultUserQuota;
	// negative: unlimited.
	UserQuota int
	// AllocationBandwidth caps each allocation's relayed bytes per second, both directions
	// together; excess is dropped and counted. Zero: DefaultAllocationBandwidth; negative:
	// unlimited.
	AllocationBandwidth int64

	// MaxPermissions caps the permissions (distinct peer IP addresses) of one allocation; a
	// CreatePermission or ChannelBind that would go beyond is refused with 508 (Insufficient
	// Capacity) and installs nothing. Refreshing a permission the allocation holds is never
	// refused. Zero: DefaultMaxPermissions; negative: unlimited.
	MaxPermissions int
	// MaxChannels caps the channels bound on one allocation (508 beyond; rebinding a bound
	// channel is a refresh and never refused). Zero: DefaultMaxChannels; negative: unlimited.
	MaxChannels int
	// PermissionRate limits the CreatePermission and ChannelBind requests of one allocation,
	// per second, with a burst of 5 seconds' worth; authenticated requests beyond are answered
	// 508. Zero: DefaultPermissionRate; negative: unlimited.
	PermissionRate float64

	// AllocateRate limits Allocate requests per client IP address (IPv6: per /64) per second,
	// with a burst of 5 seconds' worth; excess requests are dropped unanswered. Zero: 200;
	// negative: unlimited.
	AllocateRate float64
	// UnauthorizedRate limits 401 answers to signed requests per client address per second
	// (burst: 5 seconds' worth), so the relay is neither a password oracle nor an amplifier.
	// The challenge to an unsigned request is not counted (intercept.go). Zero: 100;
	// negative: unlimited. (avedge refuses 0 for both rates: it reads to an operator as "no
	// Allocate at all"; its defaults are these, 200 and 100.)
	UnauthorizedRate float64
	// MaxStreamConns caps live TCP and TLS client connections, all stream listeners together;
	// a connection beyond it is closed as soon as it is accepted. Zero: 10 000; negative:
	// unlimited. Every connection holds a file descriptor and a goroutine, whether or not it
	// ever sends a valid message.
	MaxStreamConns int
	// MaxStreamConnsPerSource caps live TCP and TLS client connections per client IP address
	// (IPv6: per /64), so that one host cannot take the whole of MaxStreamConns. Zero: 256
	// (clients behind one NAT share an address); negative: unlimited.
	MaxStreamConnsPerSource int
	// StreamFirstMessageTimeout is how long a TCP or TLS client has, from the connection
	// (TLS: from the end of the handshake), to send its first complete STUN message or
	// ChannelData before the connection is closed. Zero: 10 seconds; negative: no limit.
	StreamFirstMessageTimeout time.Duration
	// StreamIdleTimeout closes a TCP or TLS connection on which the client has sent nothing
	// for that long. A client must Refresh its allocation within the allocation's lifetime
	// (at most an hour when it asks for one, AllocationLifetime when it does not), so a live
	// allocation is never idle for longer. Zero: the longer of AllocationLifetime and an
	// hour, plus a minute; negative: no limit.
	StreamIdleTimeout time.Duration
	// StreamWriteTimeout closes a TCP or TLS connection whose client has not taken what the
	// relay writes to it for that long (its receive window stays shut), so that a client
	// that stops reading cannot hold the connection, and pion's goroutine writing to it,
	// past the idle timeout. Zero: 30 seconds; negative: no limit.
	StreamWriteTimeout time.Duration
	// TLSHandshakeTimeout bounds a TLS client's handshake, from the connection. Zero: 10
	// seconds (pion's, which does not apply to the relay's wrapped connections); negative: no
	// limit.
	TLSHandshakeTimeout time.Duration
	// ProxyProtocolFrom are the load balancers allowed to connect to a ProxyProtocol
	// listener; required when one is configured.
	ProxyProtocolFrom []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a PROXY protocol header, from the connection.
	// Zero: 5 seconds; negative: no limit.
	ProxyHeaderTimeout time.Duration

	// NoTCPRelay refuses RFC 6062 TCP allocations (REQUESTED-TRANSPORT TCP; tcprelay.go):
	// their Allocate is answered 508 (pion's answer to a relay address it cannot get). The
	// zero value serves them over the TCP and TLS listeners.
	NoTCPRelay bool
	// MaxTCPRelayConns caps live peer data connections of TCP allocations (RFC 6062), all
	// allocations together; a Connect beyond it is answered 447, an inbound peer connection
	// beyond it is closed. Zero: 10 000; negative: unlimited.
	MaxTCPRelayConns int
	// MaxTCPRelayConnsPerUser caps them per user (the AuthHandler's user ID). Zero: 256;
	// negative: unlimited.
	MaxTCPRelayConnsPerUser int
	// MaxTCPRelayConnsPerAllocation caps them per allocation. Zero: 64; negative: unlimited.
	MaxTCPRelayConnsPerAllocation int
	// TCPConnectTimeout bounds the relay's connection to a peer for a Connect request (RFC
	// 6062 §5.2: "The timeout value MUST be at least 30 seconds"). Zero: 30 seconds.
	TCPConnectTimeout time.Duration
	// TCPConnectionBindTimeout closes a peer data connection no ConnectionBind has claimed
	// within it (RFC 6062 §5.3: "If no ConnectionBind request associated with this peer data
	// connection is received after 30 seconds, the peer data connection MUST be closed").
	// Zero: 30 seconds. pion closes unbound connections after 30 seconds whatever this says.
	TCPConnectionBindTimeout time.Duration
	// TCPRelayIdleTimeout closes a bound TCP relay connection (both its client and peer
	// connections) when no byte has crossed it either way for that long. Zero: the same as
	// StreamIdleTimeout; negative: no limit.
	TCPRelayIdleTimeout time.Duration

	// ErrorRate limits every other error answer (400, 403, 420, 437, 438, 486, 508, ...) per
	// client IP address (IPv6: per /64) per second, burst 5 seconds' worth; excess answers
	// are dropped and counted, so a spoofed source cannot make the relay a reflector. Zero:
	// 200; negative: unlimited.
	ErrorRate float64
	// BindingRate limits Binding success answers per client IP address (IPv6: per /64) per
	// second, burst 5 seconds' worth; excess answers are dropped and counted. It is per
	// address, not per address and port, because a reflection aims at an address and a
	// spoofer picks the ports; the default leaves room for thousands of clients behind one
	// NAT. Zero: 500; negative: unlimited.
	BindingRate float64
	// StaticUserFailures is how many wrong passwords for one static user (Validator's Users)
	// within StaticUserLockout refuse that user for StaticUserLockout, whatever the password
	// (401, counted as auth failure "locked_out"). TURN REST and MRAS usernames, whose
	// passwords are HMACs, are not counted. Zero: 10; negative: no lockout.
	StaticUserFailures int
	// StaticUserLockout is the window failures are counted in and how long the user is then
	// refused. Zero: 5 minutes.
	StaticUserLockout time.Duration
	// RequestRate limits, per client IP address (IPv6: per /64) per second, with a burst of 5
	// seconds' worth, the STUN requests of clients without an allocation; excess requests are
	// dropped unanswered by the workers before they are queued for the control plane. The
	// requests of clients with a live allocation are not limited, and Binding requests the
	// workers answer themselves count against BindingRate instead. Zero: 1000 (several
	// Allocate rounds for each of the clients behind one NAT at AllocateRate); negative:
	// unlimited.
	RequestRate float64
	// ControlShards is the number of pion read loops (each with its own allocation manager
	// and hand-off queue) per UDP listen address; a client's requests always go to the same
	// one, chosen by its address. Zero or negative: 4.
	ControlShards int
	// NewWorkShards is how many shards, of every UDP listener together, may handle requests
	// of clients without an allocation (Allocates, floods) at once; the requests of live
	// allocations are not held back. It bounds the cores a flood of new work can take from
	// the workers and from live calls. Zero or negative: DefaultWorkers().
	NewWorkShards int
	// AlternateServer, when set, is named in a 300 (Try Alternate) answer to Allocate requests
	// while the relay drains (RFC 8489 §10 ALTERNATE-SERVER); unset, they get 508.
	AlternateServer netip.AddrPort
	// Redirect, when set, is asked about every Allocate request over UDP the relay admits
	// (past AllocateRate), with the client's address and whether the relay drains; an
	// address it returns with ok true answers the request 300 (Try Alternate) naming it, and
	// the redirect is counted by reason (draining, overloaded). The pool's choice (package
	// pool: over the load threshold, name a less-loaded member, never this relay) lives in
	// the callback. AlternateServer, when set, wins while draining; requests over TCP and
	// TLS are not redirected by it (the alternates it knows are UDP addresses). Nil: only
	// AlternateServer redirects.
	Redirect func(client netip.AddrPort, draining bool) (alt netip.AddrPort, ok bool)

	// Metrics receives control-plane events and reads the data plane's counters at scrape
	// time. Nil: no metrics.
	Metrics *metrics.Metrics
	// Logger: nil means slog.Default().
	Logger *slog.Logger

	// nonceClock is the clock nonces are issued and aged by (tests). Nil: time.Now.
	nonceClock func() time.Time

	// now is the clock of the per-allocation request rate (tests only). Nil: time.Now.
	now func() time.Time
}

// Defaults of the per-allocation caps (Config.MaxPermissions, MaxChannels, PermissionRate).
//
// An ICE agent asks for one permission per remote candidate IP address and binds a channel
// per remote candidate address it sends to: a peer with IPv4 and IPv6 on two interfaces, a
// server-reflexive and peer-reflexive address or two and a relayed one per TURN server has
// about a dozen, so 64 leaves five times that, while one credential can no longer make an
// allocation hold tens of thousands (pion keeps a timer per permission and scans its channel
// list on every ChannelBind). At the start of a call such an agent sends one request per
// candidate within a second or two, then refreshes each every few minutes: 10 requests per
// second with 51 at once covers the start and every refresh many times over.
const (
	DefaultMaxPermissions = 64
	DefaultMaxChannels    = 64
	DefaultPermissionRate = 10
)

// PeerPolicy says which peers a client may reach through the relay.
type PeerPolicy struct {
	// AllowLoopback admits loopback peers (the all-loopback development setup).
	AllowLoopback bool
	// Allow and Deny refine the built-in deny list (private, link-local, … ranges).
	Allow, Deny []netip.Prefix
}

func (c *Config) withDefaults() Config {
	out := *c
	if len(out.Listeners) == 0 {
		lo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 3478)
		out.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}, {Network: TCP, Addr: lo}}
	}
	if len(out.RelayIPs) == 0 {
		out.RelayIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	if out.MinPort == 0 && out.MaxPort == 0 {
		out.MinPort, out.MaxPort = 50000, 59999
	}
	if out.Realm == "" {
		out.Realm = "avedge"
	}
	if out.PortQuarantine == 0 {
		out.PortQuarantine = -1
	}
	if out.Workers <= 0 {
		out.Workers = DefaultWorkers()
	}
	if out.MaxAllocations == 0 {
		out.MaxAllocations = (int(out.MaxPort) - int(out.MinPort) + 1) * len(out.RelayIPs)
	}
	if out.UserQuota == 0 {
		out.UserQuota = DefaultUserQuota
	}
	if out.ProxyHeaderTimeout == 0 {
		out.ProxyHeaderTimeout = 5 * time.Second
	}
	if out.AllocationBandwidth == 0 {
		out.AllocationBandwidth = DefaultAllocationBandwidth
	}
	if out.AllocateRate == 0 {
		out.AllocateRate = 200
	}
	if out.UnauthorizedRate == 0 {
		out.UnauthorizedRate = 100
	}
	if out.MaxPermissions == 0 {
		out.MaxPermissions = DefaultMaxPermissions
	}
	if out.MaxChannels == 0 {
		out.MaxChannels = DefaultMaxChannels
	}
	if out.PermissionRate == 0 {
		out.PermissionRate = DefaultPermissionRate
	}
	if out.now == nil {
		out.now = time.Now
	}
	if out.MaxStreamConns == 0 {
		out.MaxStreamConns = 10000
	}
	if out.MaxStreamConnsPerSource == 0 {
		out.MaxStreamConnsPerSource = 256
	}
	if out.StreamFirstMessageTimeout == 0 {
		out.StreamFirstMessageTimeout = 10 * time.Second
	}
	if out.StreamIdleTimeout == 0 {
		out.StreamIdleTimeout = max(out.AllocationLifetime, time.Hour) + time.Minute
	}
	if out.StreamWriteTimeout == 0 {
		out.StreamWriteTimeout = 30 * time.Second
	}
	if out.TLSHandshakeTimeout == 0 {
		out.TLSHandshakeTimeout = 10 * time.Second
	}
	if out.MaxTCPRelayConns == 0 {
		out.MaxTCPRelayConns = 10000
	}
	if out.MaxTCPRelayConnsPerUser == 0 {
		out.MaxTCPRelayConnsPerUser = 256
	}
	if out.MaxTCPRelayConnsPerAllocation == 0 {
		out.MaxTCPRelayConnsPerAllocation = 64
	}
	if out.TCPConnectTimeout <= 0 {
		out.TCPConnectTimeout = 30 * time.Second
	}
	if out.TCPConnectionBindTimeout <= 0 {
		out.TCPConnectionBindTimeout = 30 * time.Second
	}
	if out.TCPRelayIdleTimeout == 0 {
		out.TCPRelayIdleTimeout = out.StreamIdleTimeout
	}
	if out.ErrorRate == 0 {
		out.ErrorRate = 200
	}
	if out.BindingRate == 0 {
		out.BindingRate = 500
	}
	if out.StaticUserFailures == 0 {
		out.StaticUserFailures = 10
	}
	if out.StaticUserLockout <= 0 {
		out.StaticUserLockout = 5 * time.Minute
	}
	if out.RequestRate == 0 {
		out.RequestRate = 1000
	}
	if out.ControlShards <= 0 {
		out.ControlShards = 4
	}
	if out.NewWorkShards <= 0 {
		out.NewWorkShards = DefaultWorkers()
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// The caps a zero Config applies, sized for an A/V edge so that one credential cannot take
// the relay range or its bandwidth (lift them with a negative value).
const (
	// DefaultUserQuota is the live allocations one user may hold. A client needs one per
	// relay candidate it gathers (UDP, TCP and TLS, over IPv4 and IPv6: up to 6 for a
	// bundled WebRTC session; RTP and RTCP of audio and video unbundled over three
	// transports: 12), briefly twice that many across an ICE restart or a second call.
	// 16 covers the common cases and holds one credential to 16 ports.
	DefaultUserQuota = 16
	// DefaultAllocationBandwidth is each allocation's cap in bytes per second, both
	// directions together: 20 Mbit/s. An HD video call carries 4–8 Mbit/s each way over one
	// bundled allocation (simulcast up, several streams down); the rest is headroom for key
	// frames, screen sharing, retransmissions and FEC. A bulk transfer is held to it.
	DefaultAllocationBandwidth = 2_500_000
)

// DefaultWorkers is the number of forwarding loops a zero Config.Workers runs: one per two
// cores, at least one: the kernel's network stack (softirq, wake-ups) needs the other core,
// and one worker per two cores relays more packets per CPU-second than one per core (README,
// "Performance").
func DefaultWorkers() int { return max(1, runtime.NumCPU()/2) }

// DataPath names a forwarding loop implementation (see Config.DataPath).
type DataPath string

const (
	DataPathAuto    DataPath = ""
	DataPathEpoll   DataPath = "epoll"
	DataPathIOUring DataPath = "io_uring"
	DataPathOffload DataPath = "offload"
)

// ParseDataPath reads a data path as an operator writes it: "offload", "io_uring", "epoll",
// or "auto" (or empty) for DataPathAuto.
func ParseDataPath(s string) (DataPath, error) {
	switch p := DataPath(s); p {
	case DataPathEpoll, DataPathIOUring, DataPathOffload:
		return p, nil
	case DataPathAuto, "auto":
		return DataPathAuto, nil
	}
	return "", fmt.Errorf("data path %q: want %s, %s, %s or auto", s, DataPathOffload, DataPathIOUring, DataPathEpoll)
}

// checkListenPorts refuses a listener whose port lies in the relay range: portalloc would
// hand that port to an allocation on the same address only to find it taken, and on a
// relay address a client could name the listener as a peer port that peerPortOK accepts.
func (c *Config) checkListenPorts() error {
	for _, l := range c.Listeners {
		if p := l.Addr.Port(); p != 0 && p >= c.MinPort && p <= c.MaxPort {
			return fmt.Errorf("relay: listener %s/%s: port %d is inside the relay range %d-%d (min-port/max-port): move the listener or the range",
				l.Network, l.Addr, p, c.MinPort, c.MaxPort)
		}
	}
	return nil
}
