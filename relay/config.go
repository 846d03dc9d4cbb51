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
}

// Config configures a Server. The zero value of every field but Validator is usable.
type Config struct {
	// Listeners are the addresses clients reach. Empty: UDP and TCP on 127.0.0.1:3478.
	Listeners []ListenerConfig
	// TLS is used by TLS listeners; required when one is configured.
	TLS *tls.Config

	// RelayIPs are the addresses relay sockets bind to, at most one per family. Empty:
	// 127.0.0.1.
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
	DataPath DataPath

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

	// MaxAllocations caps live allocations in total (508 beyond). Zero: unlimited.
	MaxAllocations int
	// UserQuota caps live allocations per user (486 beyond). Zero: unlimited.
	UserQuota int
	// AllocationBandwidth caps each allocation's relayed bytes per second, both directions
	// together; excess is dropped and counted. Zero: unlimited.
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
	// UnauthorizedRate limits 401 answers per client address per second (burst: 5 seconds'
	// worth), so the relay is neither a password oracle nor an amplifier. Zero: 100;
	// negative: unlimited. (avedge refuses 0 for both rates: it reads to an operator as "no
	// Allocate at all"; its defaults are these, 200 and 100.)
	UnauthorizedRate float64
	// AlternateServer, when set, is named in a 300 (Try Alternate) answer to Allocate requests
	// while the relay drains (RFC 8489 §10 ALTERNATE-SERVER); unset, they get 508.
	AlternateServer netip.AddrPort

	// Metrics receives control-plane events and reads the data plane's counters at scrape
	// time. Nil: no metrics.
	Metrics *metrics.Metrics
	// Logger: nil means slog.Default().
	Logger *slog.Logger

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
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

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
)

// ParseDataPath reads a data path as an operator writes it: "io_uring", "epoll", or "auto"
// (or empty) for DataPathAuto.
func ParseDataPath(s string) (DataPath, error) {
	switch p := DataPath(s); p {
	case DataPathEpoll, DataPathIOUring:
		return p, nil
	case DataPathAuto, "auto":
		return DataPathAuto, nil
	}
	return "", fmt.Errorf("data path %q: want %s, %s or auto", s, DataPathIOUring, DataPathEpoll)
}
