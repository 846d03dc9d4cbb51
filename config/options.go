package config

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/avedge/avedge/relay"
)

// Options is every setting avedge accepts. Each field is one option of the table below
// (optionTable): its flag name, which is also its YAML key, is given first in its comment.
// Defaults() is the embedded default; Build checks the whole and derives the settings.
type Options struct {
	// listening-ip: the addresses the UDP, TCP and TLS listeners bind, on ListeningPort and
	// TLSListeningPort. A UDP wildcard becomes one socket per address of the host.
	ListeningIPs []string
	// listening-port: the UDP and TCP port of every listening-ip (0: any free port).
	ListeningPort int
	// tls-listening-port: the TLS port of every listening-ip, when Cert and PKey are set (0: none).
	TLSListeningPort int
	// listen: extra listeners, each "transport/ip:port" (udp, tcp or tls), a tcp or tls one
	// followed by ",proxy" to take the PROXY protocol (v1 or v2) from proxy-protocol-from.
	Listen []string
	// proxy-protocol-from: the load balancers (addresses or CIDR prefixes) that may connect
	// to a ",proxy" listener; every connection from elsewhere is closed.
	ProxyProtocolFrom []string
	// no-udp: no UDP listener on ListeningPort.
	NoUDP bool
	// no-tcp: no TCP listener on ListeningPort.
	NoTCP bool
	// cert: the TLS certificate chain file (PEM); with PKey it enables TLS listeners.
	Cert string
	// pkey: the TLS private key file (PEM).
	PKey string

	// relay-ip: the addresses relay sockets bind to, any number per family (each adds the
	// relay range's ports). Empty: the first listening address of each family (refused when
	// that is a wildcard).
	RelayIPs []string
	// external-ip: "public[/private]" pairs; public is advertised in XOR-RELAYED-ADDRESS for
	// relay address private (which may be left out when there is one relay address).
	ExternalIPs []string
	// min-port: the lowest relay port of the edge range (1024 or more).
	MinPort int
	// max-port: the highest relay port of the edge range (65535 or less).
	MaxPort int
	// port-quarantine: how long a released relay port rests before reuse. Zero or negative:
	// not at all (relay.Config.PortQuarantine reads the same).
	PortQuarantine time.Duration
	// workers: the number of forwarding loops. Zero: relay.DefaultWorkers(), one per two
	// cores (relay.Config.Workers reads the same); negative is refused.
	Workers int
	// idle-hold: how long an idle worker keeps its scheduler slot. Zero: indefinitely;
	// negative: never (relay.Config.IdleHold reads the same).
	IdleHold time.Duration
	// data-path: the forwarding path, "offload" (channel-bound UDP in the kernel, XDP; the
	// rest in io_uring or epoll), "io_uring", "epoll", or "auto" or empty for offload where the
	// kernel and interfaces allow it and io_uring when the kernel runs it.
	DataPath string
	// offload-gateway: the kernel fast path sends relayed packets back to the link address
	// they came from instead of looking the next hop up (relay.Config.OffloadGateway).
	OffloadGateway bool

	// realm: the long-term credential realm; must not be empty.
	Realm string
	// static-auth-secret: TURN REST shared secrets, newest first. With none and no user, a
	// secret is generated at start. Given on the command line or inline in a file others can
	// read, it is used with a warning (Settings.Warnings).
	StaticAuthSecrets []string
	// static-auth-secret-file: a file of shared secrets ("id secret" or "secret" per line),
	// newest first, appended to StaticAuthSecrets.
	SecretFile string
	// user: static long-term users, each "name:password" (warned about as StaticAuthSecrets).
	Users []string
	// users-file: a file of static users, "name:password" per line; it wins over Users.
	UsersFile string
	// rest-api-separator: the separator between expiry and user in TURN REST usernames.
	RESTSeparator string
	// clock-skew: the clock skew tolerated when checking a credential's expiry.
	ClockSkew time.Duration

	// allow-loopback-peers: whether peers on loopback are allowed. Nil: only when every
	// listener and relay address is on loopback.
	AllowLoopbackPeers *bool
	// allowed-peer-ip: CIDRs or addresses always allowed as peers, over the built-in deny list.
	AllowedPeerIPs []string
	// denied-peer-ip: CIDRs or addresses always refused as peers.
	DeniedPeerIPs []string
	// total-quota: the most live allocations in total. Zero: every port, the size of the relay
	// port range (max-port − min-port + 1) times the relay addresses; negative: unlimited.
	// The same meanings as in relay.Config.
	TotalQuota int
	// user-quota: the most live allocations per user. Default relay.DefaultUserQuota;
	// negative: unlimited. Zero is refused: to an operator it reads as "none" or as
	// "unlimited" (coturn), while relay.Config would take it for the default.
	UserQuota int
	// max-bps: each allocation's bandwidth cap in bytes per second. Default
	// relay.DefaultAllocationBandwidth; negative: unlimited; zero is refused, as for UserQuota.
	MaxBPS int64
	// channel-lifetime: the channel binding lifetime. Zero: 10 minutes (RFC 8656).
	ChannelLifetime time.Duration
	// permission-lifetime: the permission lifetime. Zero: 5 minutes (RFC 8656).
	PermissionLifetime time.Duration
	// allocation-lifetime: the lifetime granted when a client asks for none. Zero: 10 minutes.
	AllocationLifetime time.Duration

	// max-permissions: the most permissions (peer IP addresses) of one allocation, 508 beyond.
	// Negative: unlimited; zero is refused (it would refuse every permission).
	MaxPermissions int
	// max-channels: the most channels bound on one allocation, 508 beyond. Negative:
	// unlimited; zero is refused.
	MaxChannels int
	// permission-rate: CreatePermission and ChannelBind requests per second per allocation,
	// with 5 seconds' worth of burst, 508 beyond. Negative: unlimited; zero is refused.
	PermissionRate float64

	// allocate-rate: Allocate requests per second per client address (IPv6: per /64), with
	// 5 seconds' worth of burst. Negative: unlimited. Zero is refused: to an operator it reads
	// as "no Allocate at all", which relay.Config would take for its default instead.
	AllocateRate float64
	// unauthorized-rate: 401 answers to signed requests (not the challenge to an unsigned one)
	// per second per client address, with 5 seconds' worth of burst. Negative: unlimited;
	// zero is refused, as for AllocateRate.
	UnauthorizedRate float64
	// max-tcp-connections: the most live TCP and TLS client connections; one beyond is closed
	// as accepted. Zero: unlimited; negative is refused.
	MaxTCPConnections int
	// max-tcp-connections-per-source: the most live TCP and TLS client connections per client
	// address (IPv6: per /64). Zero: unlimited; negative is refused.
	MaxTCPConnectionsPerSource int
	// tcp-first-message-timeout: how long a TCP or TLS client has to send its first complete
	// STUN message or ChannelData (TLS: after the handshake). Zero: 10 s; negative: no limit.
	TCPFirstMessageTimeout time.Duration
	// tcp-idle-timeout: a TCP or TLS connection on which the client sends nothing for this
	// long is closed. Zero: the longer of allocation-lifetime and 1 hour, plus 1 minute (a
	// live allocation is refreshed within its lifetime); negative: no limit.
	TCPIdleTimeout time.Duration
	// tcp-write-timeout: a TCP or TLS connection whose client takes nothing the relay writes
	// for this long is closed. Zero: 30 s; negative: no limit.
	TCPWriteTimeout time.Duration
	// tls-handshake-timeout: how long a TLS client has to finish its handshake. Zero: 10 s;
	// negative: no limit.
	TLSHandshakeTimeout time.Duration
	// tls-reload-interval: how often the TLS certificate and key files (cert and pkey,
	// auth-tls-cert and auth-tls-key) are read to see whether they changed; a changed pair is
	// loaded for the next handshakes, as SIGHUP does. Zero: never (SIGHUP only).
	TLSReloadInterval time.Duration
	// no-tcp-relay: refuse RFC 6062 TCP allocations (coturn's no-tcp-relay).
	NoTCPRelay bool
	// max-tcp-relay-connections, -per-user, -per-allocation: the most live peer connections
	// of TCP allocations in total, per user and per allocation. Zero: 10000, 256, 64;
	// negative: unlimited.
	MaxTCPRelayConns, MaxTCPRelayConnsPerUser, MaxTCPRelayConnsPerAllocation int
	// tcp-relay-idle-timeout: a TCP relay connection across which no byte moves either way for
	// this long is closed. Zero: tcp-idle-timeout; negative: no limit.
	TCPRelayIdleTimeout time.Duration
	// error-rate: error answers other than 401 per second per client address (IPv6: per
	// /64), with 5 seconds' worth of burst. Negative: unlimited; zero is refused, as for
	// AllocateRate.
	ErrorRate float64
	// binding-rate: Binding answers per second per client address (IPv6: per /64), with 5
	// seconds' worth of burst. Negative: unlimited; zero is refused, as for AllocateRate.
	BindingRate float64
	// user-lockout-failures: wrong passwords for one static user within UserLockoutTime
	// that refuse the user for UserLockoutTime. Negative: no lockout; zero is refused.
	UserLockoutFailures int
	// user-lockout-time: the window static-user failures are counted in, and how long the
	// user is then refused; must be positive.
	UserLockoutTime time.Duration
	// request-rate: STUN requests of clients without an allocation per second per client
	// address (IPv6: per /64), burst 5 s, dropped before they are queued for the control
	// plane. Negative: unlimited; zero is refused, as for AllocateRate.
	RequestRate float64
	// control-shards: pion read loops per UDP listen address. Zero: 4.
	ControlShards int
	// new-work-shards: shards that may handle requests of clients without an allocation at
	// once. Zero: one per two cores.
	NewWorkShards int
	// alternate-server: the ip:port named in 300 Try Alternate answers to Allocate while the
	// relay drains. Empty: those get 508.
	AlternateServer string

	// metrics-listen: the ip:port of /metrics, /healthz and /readyz. Empty: off.
	MetricsListen string

	// auth-listen: the ip:port of the built-in credential service. Empty: off.
	AuthListen string
	// auth-api-key: the bearer tokens callers of the credential service present. With none
	// (and no AuthAPIKeyFile), a key is generated when AuthListen is on loopback, and the
	// service is refused elsewhere unless AuthInsecureAnonymous. Warned about as
	// StaticAuthSecrets.
	AuthAPIKeys []string
	// auth-api-key-file: a file of bearer tokens, one per line, added to AuthAPIKeys.
	AuthAPIKeyFile string
	// allow-readable-secrets: read the files of secrets (static-auth-secret-file, users-file,
	// auth-api-key-file, pkey, auth-tls-key) even when users other than their owner can read
	// or write them, with a warning. False: such a file is refused (see internal/secretfile
	// for the rule).
	AllowReadableSecrets bool
	// auth-allow-anonymous: serve credentials without an API key; refused when AuthListen
	// is not a loopback address, unless AuthInsecureAnonymous.
	AuthAllowAnonymous bool
	// auth-insecure-anonymous: serve credentials without an API key on any address, loopback
	// or not (implies AuthAllowAnonymous), with a warning.
	AuthInsecureAnonymous bool
	// auth-tls-cert: the credential service's TLS certificate file (PEM, the chain after the
	// leaf); with AuthTLSKey the service speaks HTTPS, and SIGHUP re-reads both. Empty (with
	// AuthTLSKey): plain HTTP.
	AuthTLSCert string
	// auth-tls-key: the credential service's TLS private key file (PEM), a file of secrets
	// like PKey.
	AuthTLSKey string
	// auth-relay: the relays the credential service lists, each
	// "location:host:udpPort:tcpPort". Empty: this relay, as bound.
	AuthRelays []string
	// auth-max-duration: the longest credential the service issues.
	AuthMaxDuration time.Duration

	// admin-listen: the ip:port of the admin API (JSON over HTTP: allocations, kick,
	// revocations, drain; package admin). Empty (the default): off. It needs AdminAPIKeys.
	AdminListen string
	// admin-socket: a Unix socket for the admin API, made mode 0600: only avedge's user (and
	// root) can connect, and callers need no API key. Empty: none.
	AdminSocket string
	// admin-api-key: the bearer tokens callers of the admin API on AdminListen present
	// (warned about as StaticAuthSecrets).
	AdminAPIKeys []string
	// admin-api-key-file: a file of admin bearer tokens, one per line, added to AdminAPIKeys.
	AdminAPIKeyFile string
	// admin-tls-cert: the admin API's TLS certificate file (PEM); with AdminTLSKey it speaks
	// HTTPS, and SIGHUP re-reads both. Empty: plain HTTP (warned about off loopback).
	AdminTLSCert string
	// admin-tls-key: the admin API's TLS private key file (PEM), a file of secrets like PKey.
	AdminTLSKey string
	// revocations-file: the file of revoked credentials (JSON) the admin API writes and
	// SIGHUP re-reads; a pool of relays may share it. Empty: revocations live in memory.
	RevocationsFile string
	// pool-member: load documents of the pool's relays (http://host:port/load), polled by
	// this process: the credential service lists the pool from them, and the relay picks
	// its redirect target among them. Repeatable.
	PoolMembers []string
	// pool-discover: the pool found in DNS at every poll: "_metrics._tcp.avedge-metrics"
	// (SRV records of a headless Service) or "host:port" (every A/AAAA record of host).
	PoolDiscover string
	// pool-interval, pool-timeout, pool-fail-after, pool-hysteresis: see pool.MonitorConfig.
	PoolInterval   time.Duration
	PoolTimeout    time.Duration
	PoolFailAfter  int
	PoolHysteresis float64
	// pool-zone: this relay's zone label, in its load document; the credential service lists
	// relays of its own pool-zone first. Empty: none.
	PoolZone string
	// pool-relay: how clients reach this relay, "location:host:udpPort:tcpPort" as auth-relay,
	// published in its load document. Empty: as bound (an unspecified listen address
	// replaced by the first relay-ip).
	PoolRelays []string
	// pool-alternate: the UDP ip:port other relays name in ALTERNATE-SERVER to send clients
	// here, at most one per family. Empty: the pool-relay entries whose host is an IP.
	PoolAlternates []string
	// pool-redirect-threshold: above this load score (0 to 1, pool.Load.Score) the relay
	// answers a new Allocate over UDP with 300 Try Alternate naming a pool member below it.
	// 0: off. While draining it redirects to the pool whatever the threshold.
	PoolRedirectThreshold float64
	// pool-max-bps: the relayed bits per second this relay is sized for, counted in its score.
	// 0: bandwidth not counted.
	PoolMaxBPS float64

	// drain-timeout: on SIGTERM, how long live allocations may go on before exit; negative
	// is refused.
	DrainTimeout time.Duration
	// log-format: "text" or "json".
	LogFormat string
	// log-level: "debug", "info", "warn" or "error".
	LogLevel string
	// print-credentials: whether a ready-to-use credential is printed at start. Nil: only
	// when the secret was generated. Never printed while a listener is not on loopback
	// (Settings.NonLoopback): avedge writes it to a file only its user can read instead.
	PrintCredentials *bool

	// notes are Parse's warnings about where secrets were given: on the command line, or
	// inline in a config file others can read. Build passes them on in Settings.Warnings.
	// Not an option: no row of optionTable.
	notes []string
}

// option is one row of optionTable: a setting's flag name (also its YAML key), the field of
// Options it fills, its default and its usage text.
type option struct {
	name  string
	usage string
	// secretFile, for an option whose value is a secret, names the option of the file that
	// should hold it instead (a warning says so when the secret is given on the command line
	// or in a config file others can read); "" for the other options.
	secretFile string
	// field returns a pointer to the option's field of o (*int, *string, *[]string, ...).
	field func(o *Options) any
	// setDefault writes the default into o.
	setDefault func(o *Options)
}

// opt makes an option of a field of type T.
func opt[T any](name string, field func(*Options) *T, def T, usage string) option {
	return option{name: name, usage: usage,
		field: func(o *Options) any { return field(o) },
		setDefault: func(o *Options) {
			v := def
			if s, ok := any(v).([]string); ok { // no slice shared with the table
				v = any(slices.Clone(s)).(T)
			}
			*field(o) = v
		}}
}

// secret marks op as carrying a secret that belongs in the file of option file.
func secret(file string, op option) option {
	op.secretFile = file
	return op
}

// given reports whether the field op fills holds a value that is not empty (a string or a
// list: what secret options are).
func (op option) given(o *Options) bool {
	switch p := op.field(o).(type) {
	case *string:
		return *p != ""
	case *[]string:
		return len(*p) > 0
	}
	return true
}

// optionTable drives the flags, the YAML keys, the defaults and the usage text: one row per
// field of Options (a test checks that each field has exactly one).
var optionTable = []option{
	opt("listening-ip", func(o *Options) *[]string { return &o.ListeningIPs }, []string{"127.0.0.1"},
		"address to listen on, repeatable (default 127.0.0.1)"),
	opt("listening-port", func(o *Options) *int { return &o.ListeningPort }, 3478,
		"UDP and TCP port for STUN/TURN"),
	opt("tls-listening-port", func(o *Options) *int { return &o.TLSListeningPort }, 5349,
		"TLS port, used when cert and pkey are set"),
	opt("listen", func(o *Options) *[]string { return &o.Listen }, nil,
		"extra listener transport/ip:port, repeatable, e.g. tcp/0.0.0.0:443 or tls/[::]:443; ,proxy after a tcp or tls one (tls/0.0.0.0:443,proxy) takes the PROXY protocol v1/v2 from proxy-protocol-from"),
	opt("proxy-protocol-from", func(o *Options) *[]string { return &o.ProxyProtocolFrom }, nil,
		"load balancer address or CIDR allowed to connect to ,proxy listeners, repeatable; each connection must start with a PROXY header naming the client"),
	opt("no-udp", func(o *Options) *bool { return &o.NoUDP }, false,
		"do not listen on UDP listening-port"),
	opt("no-tcp", func(o *Options) *bool { return &o.NoTCP }, false,
		"do not listen on TCP listening-port"),
	opt("cert", func(o *Options) *string { return &o.Cert }, "",
		"TLS certificate chain file (PEM); enables TLS listeners"),
	opt("pkey", func(o *Options) *string { return &o.PKey }, "",
		"TLS private key file (PEM); only its owner may read it (see allow-readable-secrets)"),
	opt("relay-ip", func(o *Options) *[]string { return &o.RelayIPs }, nil,
		"address relay sockets bind to, repeatable: several per family multiply the relay range (default: the first listening-ip of each family)"),
	opt("external-ip", func(o *Options) *[]string { return &o.ExternalIPs }, nil,
		"public[/private]: advertise public in XOR-RELAYED-ADDRESS for relay address private (coturn -X)"),
	opt("min-port", func(o *Options) *int { return &o.MinPort }, 50000,
		"lowest relay port of the edge range"),
	opt("max-port", func(o *Options) *int { return &o.MaxPort }, 59999,
		"highest relay port of the edge range"),
	opt("port-quarantine", func(o *Options) *time.Duration { return &o.PortQuarantine }, 10*time.Second,
		"how long a released relay port rests before reuse (0: none)"),
	opt("workers", func(o *Options) *int { return &o.Workers }, 0,
		"forwarding loops, each with its own SO_REUSEPORT socket (0: one per two cores)"),
	opt("data-path", func(o *Options) *string { return &o.DataPath }, "",
		"forwarding path: offload (channel-bound UDP relayed in the kernel by XDP, on loopback by its tc variant, the rest by io_uring or epoll; refuses to start without it), io_uring, epoll, or auto (offload where the kernel, capabilities and interfaces allow it, loopback included, not on a veth; io_uring when the kernel runs it; logs which and why); io_uring or epoll attach nothing"),
	opt("offload-gateway", func(o *Options) *bool { return &o.OffloadGateway }, false,
		"kernel fast path: send relayed packets back to the link address they came from (every client and peer behind one gateway) instead of a route lookup, which needs forwarding on the interface"),
	opt("idle-hold", func(o *Options) *time.Duration { return &o.IdleHold }, time.Second,
		"how long a worker without packets keeps its scheduler slot before it parks through the Go runtime (held, a packet costs one wake-up; parked, an idle relay costs no CPU; 0: indefinitely; negative: never)"),
	opt("realm", func(o *Options) *string { return &o.Realm }, "avedge",
		"long-term credential realm"),
	secret("static-auth-secret-file", opt("static-auth-secret", func(o *Options) *[]string { return &o.StaticAuthSecrets }, nil,
		"TURN REST shared secret, repeatable, newest first; every user of the host can read the command line: prefer static-auth-secret-file (default: generated at start, and printed while every listener is on loopback)")),
	opt("static-auth-secret-file", func(o *Options) *string { return &o.SecretFile }, "",
		"file of shared secrets, one per line (\"id secret\" or \"secret\"), newest first; re-read on SIGHUP; only its owner may read it (see allow-readable-secrets)"),
	secret("users-file", opt("user", func(o *Options) *[]string { return &o.Users }, nil,
		"static long-term user name:password, repeatable; every user of the host can read the command line: prefer users-file")),
	opt("users-file", func(o *Options) *string { return &o.UsersFile }, "",
		"file of static users, name:password per line; re-read on SIGHUP; only its owner may read it"),
	opt("rest-api-separator", func(o *Options) *string { return &o.RESTSeparator }, ":",
		"separator between expiry and user in TURN REST usernames"),
	opt("clock-skew", func(o *Options) *time.Duration { return &o.ClockSkew }, 30*time.Second,
		"tolerated clock skew when checking credential expiry"),
	opt("allow-loopback-peers", func(o *Options) **bool { return &o.AllowLoopbackPeers }, nil,
		"allow peers on loopback (default: true only when every listener and relay address is loopback)"),
	opt("allowed-peer-ip", func(o *Options) *[]string { return &o.AllowedPeerIPs }, nil,
		"CIDR or address always allowed as a peer, repeatable (overrides the built-in deny list)"),
	opt("denied-peer-ip", func(o *Options) *[]string { return &o.DeniedPeerIPs }, nil,
		"CIDR or address always refused as a peer, repeatable"),
	opt("total-quota", func(o *Options) *int { return &o.TotalQuota }, 0,
		"maximum live allocations in total, 508 beyond (0: every port, the relay range's size times the relay-ip addresses; -1: unlimited)"),
	opt("user-quota", func(o *Options) *int { return &o.UserQuota }, relay.DefaultUserQuota,
		"maximum live allocations per user, 486 beyond: one per ICE component and candidate, twice over for an ICE restart (-1: unlimited)"),
	opt("max-bps", func(o *Options) *int64 { return &o.MaxBPS }, relay.DefaultAllocationBandwidth,
		"bandwidth cap per allocation in bytes per second, both directions together, excess dropped; the default is 20 Mbit/s: HD video with headroom (-1: unlimited)"),
	opt("channel-lifetime", func(o *Options) *time.Duration { return &o.ChannelLifetime }, 0,
		"channel binding lifetime (0: 10m, RFC 8656)"),
	opt("permission-lifetime", func(o *Options) *time.Duration { return &o.PermissionLifetime }, 0,
		"permission lifetime (0: 5m, RFC 8656)"),
	opt("allocation-lifetime", func(o *Options) *time.Duration { return &o.AllocationLifetime }, 0,
		"lifetime granted when a client asks for none (0: 10m; a requested LIFETIME is granted up to 1h)"),
	opt("max-permissions", func(o *Options) *int { return &o.MaxPermissions }, 64,
		"most permissions (peer IP addresses) per allocation, 508 beyond; an ICE agent needs one per remote candidate IP (-1: unlimited)"),
	opt("max-channels", func(o *Options) *int { return &o.MaxChannels }, 64,
		"most channels bound per allocation, 508 beyond (-1: unlimited)"),
	opt("permission-rate", func(o *Options) *float64 { return &o.PermissionRate }, 10,
		"CreatePermission and ChannelBind requests per second per allocation, burst 5 s, 508 beyond (-1: unlimited)"),
	opt("allocate-rate", func(o *Options) *float64 { return &o.AllocateRate }, 200,
		"Allocate requests per second per client address (IPv6: per /64), burst 5 s; excess dropped (-1: unlimited)"),
	opt("unauthorized-rate", func(o *Options) *float64 { return &o.UnauthorizedRate }, 100,
		"401 answers to signed requests (wrong password, unknown user) per second per client address, burst 5 s; the challenge to an unsigned request is not counted (-1: unlimited)"),
	opt("max-tcp-connections", func(o *Options) *int { return &o.MaxTCPConnections }, 10000,
		"maximum live TCP and TLS client connections; one beyond is closed at once (0: unlimited)"),
	opt("max-tcp-connections-per-source", func(o *Options) *int { return &o.MaxTCPConnectionsPerSource }, 256,
		"maximum live TCP and TLS client connections per client address, IPv6 per /64 (0: unlimited)"),
	opt("tcp-first-message-timeout", func(o *Options) *time.Duration { return &o.TCPFirstMessageTimeout }, 10*time.Second,
		"a TCP or TLS client that sends no complete STUN message or ChannelData this long after connecting (TLS: after the handshake) is closed (0: 10s; -1: no limit)"),
	opt("tcp-idle-timeout", func(o *Options) *time.Duration { return &o.TCPIdleTimeout }, 0,
		"a TCP or TLS connection the client sends nothing on for this long is closed (0: the longer of allocation-lifetime and 1h, plus 1m, so a refreshed allocation is never cut; -1: no limit)"),
	opt("tcp-write-timeout", func(o *Options) *time.Duration { return &o.TCPWriteTimeout }, 30*time.Second,
		"a TCP or TLS connection whose client takes nothing the relay writes for this long is closed (0: 30s; -1: no limit)"),
	opt("tls-handshake-timeout", func(o *Options) *time.Duration { return &o.TLSHandshakeTimeout }, 10*time.Second,
		"a TLS client that has not finished its handshake this long after connecting is closed (0: 10s; -1: no limit)"),
	opt("tls-reload-interval", func(o *Options) *time.Duration { return &o.TLSReloadInterval }, 5*time.Second,
		"how often the TLS certificate and key files are checked for a change, which is loaded for new connections as SIGHUP does (0: SIGHUP only)"),
	opt("no-tcp-relay", func(o *Options) *bool { return &o.NoTCPRelay }, false,
		"refuse RFC 6062 TCP allocations (REQUESTED-TRANSPORT TCP)"),
	opt("max-tcp-relay-connections", func(o *Options) *int { return &o.MaxTCPRelayConns }, 10000,
		"maximum live peer connections of TCP allocations; a Connect beyond is answered 447 (-1: unlimited)"),
	opt("max-tcp-relay-connections-per-user", func(o *Options) *int { return &o.MaxTCPRelayConnsPerUser }, 256,
		"maximum live peer connections of TCP allocations per user (-1: unlimited)"),
	opt("max-tcp-relay-connections-per-allocation", func(o *Options) *int { return &o.MaxTCPRelayConnsPerAllocation }, 64,
		"maximum live peer connections per TCP allocation (-1: unlimited)"),
	opt("tcp-relay-idle-timeout", func(o *Options) *time.Duration { return &o.TCPRelayIdleTimeout }, 0,
		"a TCP relay connection across which nothing moves either way for this long is closed (0: tcp-idle-timeout; -1: no limit)"),
	opt("error-rate", func(o *Options) *float64 { return &o.ErrorRate }, 200,
		"error answers other than 401 per second per client address (IPv6: per /64), burst 5 s; excess dropped (-1: unlimited)"),
	opt("binding-rate", func(o *Options) *float64 { return &o.BindingRate }, 500,
		"Binding answers per second per client address (IPv6: per /64), burst 5 s; excess dropped (-1: unlimited)"),
	opt("user-lockout-failures", func(o *Options) *int { return &o.UserLockoutFailures }, 10,
		"wrong passwords for one static user within user-lockout-time that refuse it for user-lockout-time (-1: never)"),
	opt("user-lockout-time", func(o *Options) *time.Duration { return &o.UserLockoutTime }, 5*time.Minute,
		"window of user-lockout-failures, and how long the static user is then refused"),
	opt("request-rate", func(o *Options) *float64 { return &o.RequestRate }, 1000,
		"STUN requests of clients without an allocation, per second per client address, burst 5 s; excess dropped before it is queued (-1: unlimited)"),
	opt("control-shards", func(o *Options) *int { return &o.ControlShards }, 4,
		"pion read loops per UDP listen address; a client's requests always reach the same one"),
	opt("new-work-shards", func(o *Options) *int { return &o.NewWorkShards }, 0,
		"shards that may handle requests of clients without an allocation at once, so a flood leaves cores to live calls (0: one per two cores)"),
	opt("alternate-server", func(o *Options) *string { return &o.AlternateServer }, "",
		"ip:port named in 300 Try Alternate answers to Allocate while draining (empty: 508)"),
	opt("metrics-listen", func(o *Options) *string { return &o.MetricsListen }, "127.0.0.1:9641",
		"address of /metrics, /healthz, /readyz (empty: off)"),
	opt("auth-listen", func(o *Options) *string { return &o.AuthListen }, "127.0.0.1:8443",
		"address of the built-in credential service (empty: off); on loopback without auth-api-key a key is generated (and printed while every listener is on loopback)"),
	secret("auth-api-key-file", opt("auth-api-key", func(o *Options) *[]string { return &o.AuthAPIKeys }, nil,
		"bearer token callers of the credential service present, repeatable; every user of the host can read the command line: prefer auth-api-key-file")),
	opt("auth-api-key-file", func(o *Options) *string { return &o.AuthAPIKeyFile }, "",
		"file of bearer tokens, one per line; only its owner may read it"),
	opt("allow-readable-secrets", func(o *Options) *bool { return &o.AllowReadableSecrets }, false,
		"read static-auth-secret-file, users-file, auth-api-key-file, pkey and auth-tls-key even when users other than their owner can read them (refused otherwise: chmod 600 them; root's 0640 and 0440 files are accepted)"),
	opt("auth-allow-anonymous", func(o *Options) *bool { return &o.AuthAllowAnonymous }, false,
		"serve credentials without an API key; only when auth-listen is a loopback address (see auth-insecure-anonymous)"),
	opt("auth-insecure-anonymous", func(o *Options) *bool { return &o.AuthInsecureAnonymous }, false,
		"serve credentials without an API key on any auth-listen address, loopback or not: anyone who reaches it gets credentials"),
	opt("auth-tls-cert", func(o *Options) *string { return &o.AuthTLSCert }, "",
		"credential service's TLS certificate file (PEM, chain after the leaf); with auth-tls-key it serves HTTPS; re-read on SIGHUP"),
	opt("auth-tls-key", func(o *Options) *string { return &o.AuthTLSKey }, "",
		"credential service's TLS private key file (PEM); re-read on SIGHUP; only its owner may read it (see allow-readable-secrets)"),
	opt("auth-relay", func(o *Options) *[]string { return &o.AuthRelays }, nil,
		"relay listed by the credential service, location:host:udpPort:tcpPort, repeatable (default: this relay)"),
	opt("auth-max-duration", func(o *Options) *time.Duration { return &o.AuthMaxDuration }, 480*time.Minute,
		"longest credential the service issues"),
	opt("admin-listen", func(o *Options) *string { return &o.AdminListen }, "",
		"address of the admin API, e.g. 127.0.0.1:9443 (empty: off); needs admin-api-key-file"),
	opt("admin-socket", func(o *Options) *string { return &o.AdminSocket }, "",
		"Unix socket of the admin API, mode 0600, no API key needed (empty: none)"),
	secret("admin-api-key-file", opt("admin-api-key", func(o *Options) *[]string { return &o.AdminAPIKeys }, nil,
		"bearer token callers of the admin API present, repeatable; every user of the host can read the command line: prefer admin-api-key-file")),
	opt("admin-api-key-file", func(o *Options) *string { return &o.AdminAPIKeyFile }, "",
		"file of admin API bearer tokens, one per line; only its owner may read it"),
	opt("admin-tls-cert", func(o *Options) *string { return &o.AdminTLSCert }, "",
		"admin API's TLS certificate file (PEM); with admin-tls-key it serves HTTPS; re-read on SIGHUP"),
	opt("admin-tls-key", func(o *Options) *string { return &o.AdminTLSKey }, "",
		"admin API's TLS private key file (PEM); only its owner may read it"),
	opt("revocations-file", func(o *Options) *string { return &o.RevocationsFile }, "",
		"file of revoked credentials (JSON), written by the admin API and re-read on SIGHUP; share it across a pool (empty: in memory)"),
	opt("pool-member", func(o *Options) *[]string { return &o.PoolMembers }, nil,
		"load document of a relay of the pool (http://host:9641/load), polled to list the pool by load and to choose redirect targets; repeatable"),
	opt("pool-discover", func(o *Options) *string { return &o.PoolDiscover }, "",
		"find the pool's load documents in DNS at every poll: _metrics._tcp.<headless service> (SRV) or host:port (A/AAAA)"),
	opt("pool-interval", func(o *Options) *time.Duration { return &o.PoolInterval }, 5*time.Second,
		"time between polls of the pool's load documents"),
	opt("pool-timeout", func(o *Options) *time.Duration { return &o.PoolTimeout }, 2*time.Second,
		"bound on one poll of a member; below pool-interval"),
	opt("pool-fail-after", func(o *Options) *int { return &o.PoolFailAfter }, 2,
		"consecutive failed polls after which a member leaves the lists (unlisted within pool-fail-after x pool-interval + pool-timeout)"),
	opt("pool-hysteresis", func(o *Options) *float64 { return &o.PoolHysteresis }, 0.05,
		"score margin by which a relay must beat the one listed before it to move ahead (-1: none)"),
	opt("pool-zone", func(o *Options) *string { return &o.PoolZone }, "",
		"this relay's zone or region label; the credential service lists its own zone's relays first"),
	opt("pool-relay", func(o *Options) *[]string { return &o.PoolRelays }, nil,
		"how clients reach this relay, location:host:udpPort:tcpPort, published in its load document; repeatable (default: as bound)"),
	opt("pool-alternate", func(o *Options) *[]string { return &o.PoolAlternates }, nil,
		"UDP ip:port other relays name in ALTERNATE-SERVER to send clients here; repeatable (default: the pool-relay hosts that are IPs)"),
	opt("pool-redirect-threshold", func(o *Options) *float64 { return &o.PoolRedirectThreshold }, 0,
		"load score (0-1) above which a new UDP Allocate is answered 300 Try Alternate naming a less-loaded pool member (0: off)"),
	opt("pool-max-bps", func(o *Options) *float64 { return &o.PoolMaxBPS }, 0,
		"relayed bits per second this relay is sized for, counted in its load score (0: not counted)"),
	opt("drain-timeout", func(o *Options) *time.Duration { return &o.DrainTimeout }, 30*time.Second,
		"on SIGTERM, how long live allocations may go on before exit"),
	opt("log-format", func(o *Options) *string { return &o.LogFormat }, "text",
		"text or json"),
	opt("log-level", func(o *Options) *string { return &o.LogLevel }, "info",
		"debug, info, warn or error"),
	opt("print-credentials", func(o *Options) **bool { return &o.PrintCredentials }, nil,
		"print a ready-to-use credential at start (default: true when the secret was generated); while a listener is not on loopback it is written to a file only this user can read, and its name printed"),
}

// Defaults is the embedded default: everything on loopback, the A/V Edge's relay range.
func Defaults() Options {
	var o Options
	for _, op := range optionTable {
		op.setDefault(&o)
	}
	return o
}

// FlagSet binds every option to a flag of fs; the flag's default is the option's value in o
// (what the defaults and the file set).
func (o *Options) FlagSet(fs *flag.FlagSet) {
	for _, op := range optionTable {
		switch p := op.field(o).(type) {
		case *int:
			fs.IntVar(p, op.name, *p, op.usage)
		case *int64:
			fs.Int64Var(p, op.name, *p, op.usage)
		case *float64:
			fs.Float64Var(p, op.name, *p, op.usage)
		case *string:
			fs.StringVar(p, op.name, *p, op.usage)
		case *bool:
			fs.BoolVar(p, op.name, *p, op.usage)
		case *time.Duration:
			fs.DurationVar(p, op.name, *p, op.usage)
		case *[]string:
			fs.Var(&stringList{p: p}, op.name, op.usage)
		case **bool:
			fs.Var(optBool{p}, op.name, op.usage)
		default:
			panic(fmt.Sprintf("config: option %s: no flag for a field of type %T", op.name, p))
		}
	}
}

// lookupOption finds the option named name (a flag name or YAML key).
func lookupOption(name string) (option, bool) {
	for _, op := range optionTable {
		if op.name == name {
			return op, true
		}
	}
	return option{}, false
}

// stringList is a repeatable flag; the first use on the command line replaces what the file
// or the defaults set.
type stringList struct {
	p   *[]string
	set bool
}

func (s *stringList) String() string {
	if s.p == nil {
		return ""
	}
	return strings.Join(*s.p, ",")
}

func (s *stringList) Set(v string) error {
	if !s.set {
		*s.p = nil
		s.set = true
	}
	*s.p = append(*s.p, v)
	return nil
}

// optBool is a flag for a *bool: nil until given ("auto").
type optBool struct{ p **bool }

func (b optBool) String() string {
	if b.p == nil || *b.p == nil {
		return "auto"
	}
	return strconv.FormatBool(**b.p)
}

func (b optBool) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	*b.p = &x
	return nil
}

func (b optBool) IsBoolFlag() bool { return true }
