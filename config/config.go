// Package config reads avedge's configuration: command-line flags and an optional YAML file
// with the same keys (coturn's names where coturn has the same option), checked strictly, and
// turned into the relay's, the credential service's and the metrics endpoint's settings.
//
// Precedence: built-in defaults, then the file named by --config, then flags given on the
// command line. An unknown key, a bad port range, a missing certificate file or an address
// that does not parse is refused at start with a message that names the key and what to do.
package config

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay"
	"github.com/avedge/avedge/relay/policy"
)

// Options is every setting avedge accepts. The yaml key of a field is also its flag name.
type Options struct {
	ListeningIPs     []string `yaml:"listening-ip"`
	ListeningPort    int      `yaml:"listening-port"`
	TLSListeningPort int      `yaml:"tls-listening-port"`
	Listen           []string `yaml:"listen"`
	NoUDP            bool     `yaml:"no-udp"`
	NoTCP            bool     `yaml:"no-tcp"`
	Cert             string   `yaml:"cert"`
	PKey             string   `yaml:"pkey"`

	RelayIPs       []string      `yaml:"relay-ip"`
	ExternalIPs    []string      `yaml:"external-ip"`
	MinPort        int           `yaml:"min-port"`
	MaxPort        int           `yaml:"max-port"`
	PortQuarantine time.Duration `yaml:"port-quarantine"`
	Workers        int           `yaml:"workers"`
	IdleHold       time.Duration `yaml:"idle-hold"`
	DataPath       string        `yaml:"data-path"`

	Realm             string        `yaml:"realm"`
	StaticAuthSecrets []string      `yaml:"static-auth-secret"`
	SecretFile        string        `yaml:"static-auth-secret-file"`
	Users             []string      `yaml:"user"`
	UsersFile         string        `yaml:"users-file"`
	RESTSeparator     string        `yaml:"rest-api-separator"`
	ClockSkew         time.Duration `yaml:"clock-skew"`

	AllowLoopbackPeers *bool         `yaml:"allow-loopback-peers"`
	AllowedPeerIPs     []string      `yaml:"allowed-peer-ip"`
	DeniedPeerIPs      []string      `yaml:"denied-peer-ip"`
	TotalQuota         int           `yaml:"total-quota"`
	UserQuota          int           `yaml:"user-quota"`
	MaxBPS             int64         `yaml:"max-bps"`
	ChannelLifetime    time.Duration `yaml:"channel-lifetime"`
	PermissionLifetime time.Duration `yaml:"permission-lifetime"`
	AllocationLifetime time.Duration `yaml:"allocation-lifetime"`

	AllocateRate     float64 `yaml:"allocate-rate"`
	UnauthorizedRate float64 `yaml:"unauthorized-rate"`
	AlternateServer  string  `yaml:"alternate-server"`

	MetricsListen string `yaml:"metrics-listen"`

	AuthListen         string        `yaml:"auth-listen"`
	AuthAPIKeys        []string      `yaml:"auth-api-key"`
	AuthAPIKeyFile     string        `yaml:"auth-api-key-file"`
	AuthAllowAnonymous bool          `yaml:"auth-allow-anonymous"`
	AuthRelays         []string      `yaml:"auth-relay"`
	AuthMaxDuration    time.Duration `yaml:"auth-max-duration"`

	DrainTimeout     time.Duration `yaml:"drain-timeout"`
	LogFormat        string        `yaml:"log-format"`
	LogLevel         string        `yaml:"log-level"`
	PrintCredentials *bool         `yaml:"print-credentials"`
}

// Defaults is the embedded default: everything on loopback, the A/V Edge's relay range.
func Defaults() Options {
	return Options{
		ListeningIPs:     []string{"127.0.0.1"},
		ListeningPort:    3478,
		TLSListeningPort: 5349,
		MinPort:          50000,
		MaxPort:          59999,
		PortQuarantine:   10 * time.Second,
		Realm:            "avedge",
		RESTSeparator:    ":",
		ClockSkew:        30 * time.Second,
		MetricsListen:    "127.0.0.1:9641",
		AuthListen:       "127.0.0.1:8443",
		AuthMaxDuration:  480 * time.Minute,
		AllocateRate:     200,
		UnauthorizedRate: 100,
		DrainTimeout:     30 * time.Second,
		IdleHold:         time.Second,
		LogFormat:        "text",
		LogLevel:         "info",
	}
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

// FlagSet binds every option to a flag of fs, documented with its default.
func (o *Options) FlagSet(fs *flag.FlagSet) {
	d := *o // flags start from what defaults and the file set
	list := func(p *[]string, name, usage string) { fs.Var(&stringList{p: p}, name, usage) }
	list(&o.ListeningIPs, "listening-ip", "address to listen on, repeatable (default 127.0.0.1)")
	fs.IntVar(&o.ListeningPort, "listening-port", d.ListeningPort, "UDP and TCP port for STUN/TURN")
	fs.IntVar(&o.TLSListeningPort, "tls-listening-port", d.TLSListeningPort, "TLS port, used when cert and pkey are set")
	list(&o.Listen, "listen", "extra listener transport/ip:port, repeatable, e.g. tcp/0.0.0.0:443 or tls/[::]:443")
	fs.BoolVar(&o.NoUDP, "no-udp", d.NoUDP, "do not listen on UDP listening-port")
	fs.BoolVar(&o.NoTCP, "no-tcp", d.NoTCP, "do not listen on TCP listening-port")
	fs.StringVar(&o.Cert, "cert", d.Cert, "TLS certificate chain file (PEM); enables TLS listeners")
	fs.StringVar(&o.PKey, "pkey", d.PKey, "TLS private key file (PEM)")
	list(&o.RelayIPs, "relay-ip", "address relay sockets bind to, one per family (default: the first listening-ip of each family)")
	list(&o.ExternalIPs, "external-ip", "public[/private]: advertise public in XOR-RELAYED-ADDRESS for relay address private (coturn -X)")
	fs.IntVar(&o.MinPort, "min-port", d.MinPort, "lowest relay port of the edge range")
	fs.IntVar(&o.MaxPort, "max-port", d.MaxPort, "highest relay port of the edge range")
	fs.DurationVar(&o.PortQuarantine, "port-quarantine", d.PortQuarantine, "how long a released relay port rests before reuse (0: none)")
	fs.IntVar(&o.Workers, "workers", d.Workers, "forwarding loops, each with its own SO_REUSEPORT socket (0: one per two cores)")
	fs.StringVar(&o.DataPath, "data-path", d.DataPath, "forwarding loop: io_uring, epoll, or auto (io_uring when the kernel runs it)")
	fs.DurationVar(&o.IdleHold, "idle-hold", d.IdleHold, "how long a worker without packets keeps its scheduler slot before it parks through the Go runtime (held, a packet costs one wake-up; parked, an idle relay costs no CPU; 0: indefinitely; negative: never)")
	fs.StringVar(&o.Realm, "realm", d.Realm, "long-term credential realm")
	list(&o.StaticAuthSecrets, "static-auth-secret", "TURN REST shared secret, repeatable, newest first (default: generated at start and printed)")
	fs.StringVar(&o.SecretFile, "static-auth-secret-file", d.SecretFile, "file of shared secrets, one per line (\"id secret\" or \"secret\"), newest first; re-read on SIGHUP")
	list(&o.Users, "user", "static long-term user name:password, repeatable")
	fs.StringVar(&o.UsersFile, "users-file", d.UsersFile, "file of static users, name:password per line; re-read on SIGHUP")
	fs.StringVar(&o.RESTSeparator, "rest-api-separator", d.RESTSeparator, "separator between expiry and user in TURN REST usernames")
	fs.DurationVar(&o.ClockSkew, "clock-skew", d.ClockSkew, "tolerated clock skew when checking credential expiry")
	fs.Var(optBool{&o.AllowLoopbackPeers}, "allow-loopback-peers", "allow peers on loopback (default: true only when every listener and relay address is loopback)")
	list(&o.AllowedPeerIPs, "allowed-peer-ip", "CIDR or address always allowed as a peer, repeatable (overrides the built-in deny list)")
	list(&o.DeniedPeerIPs, "denied-peer-ip", "CIDR or address always refused as a peer, repeatable")
	fs.IntVar(&o.TotalQuota, "total-quota", d.TotalQuota, "maximum live allocations in total, 508 beyond (0: unlimited)")
	fs.IntVar(&o.UserQuota, "user-quota", d.UserQuota, "maximum live allocations per user, 486 beyond (0: unlimited)")
	fs.Int64Var(&o.MaxBPS, "max-bps", d.MaxBPS, "bandwidth cap per allocation in bytes per second (0: unlimited)")
	fs.DurationVar(&o.ChannelLifetime, "channel-lifetime", d.ChannelLifetime, "channel binding lifetime (0: 10m, RFC 8656)")
	fs.DurationVar(&o.PermissionLifetime, "permission-lifetime", d.PermissionLifetime, "permission lifetime (0: 5m, RFC 8656)")
	fs.DurationVar(&o.AllocationLifetime, "allocation-lifetime", d.AllocationLifetime, "lifetime granted when a client asks for none (0: 10m; a requested LIFETIME is granted up to 1h)")
	fs.Float64Var(&o.AllocateRate, "allocate-rate", d.AllocateRate, "Allocate requests per second per client address (IPv6: per /64), burst 5 s; excess dropped (-1: unlimited)")
	fs.Float64Var(&o.UnauthorizedRate, "unauthorized-rate", d.UnauthorizedRate, "401 answers per second per client address, burst 5 s (-1: unlimited)")
	fs.StringVar(&o.AlternateServer, "alternate-server", d.AlternateServer, "ip:port named in 300 Try Alternate answers to Allocate while draining (empty: 508)")
	fs.StringVar(&o.MetricsListen, "metrics-listen", d.MetricsListen, "address of /metrics, /healthz, /readyz (empty: off)")
	fs.StringVar(&o.AuthListen, "auth-listen", d.AuthListen, "address of the built-in credential service (empty: off); on loopback without auth-api-key a key is generated and printed")
	list(&o.AuthAPIKeys, "auth-api-key", "bearer token callers of the credential service present, repeatable")
	fs.StringVar(&o.AuthAPIKeyFile, "auth-api-key-file", d.AuthAPIKeyFile, "file of bearer tokens, one per line")
	fs.BoolVar(&o.AuthAllowAnonymous, "auth-allow-anonymous", d.AuthAllowAnonymous, "serve credentials without an API key (only on a trusted network)")
	list(&o.AuthRelays, "auth-relay", "relay listed by the credential service, location:host:udpPort:tcpPort, repeatable (default: this relay)")
	fs.DurationVar(&o.AuthMaxDuration, "auth-max-duration", d.AuthMaxDuration, "longest credential the service issues")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", d.DrainTimeout, "on SIGTERM, how long live allocations may go on before exit")
	fs.StringVar(&o.LogFormat, "log-format", d.LogFormat, "text or json")
	fs.StringVar(&o.LogLevel, "log-level", d.LogLevel, "debug, info, warn or error")
	fs.Var(optBool{&o.PrintCredentials}, "print-credentials", "print a ready-to-use credential at start (default: true when the secret was generated)")
}

// Parse reads args (without the program name): --config FILE first, then every flag over it.
// It returns flag.ErrHelp for -h/--help after printing usage to out.
func Parse(args []string, out io.Writer) (Options, error) {
	o := Defaults()
	pre := flag.NewFlagSet("avedge", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	var path string
	pre.StringVar(&path, "config", "", "")
	var scratch Options
	scratch.FlagSet(pre)
	if err := pre.Parse(args); err != nil && !errors.Is(err, flag.ErrHelp) {
		fs := flag.NewFlagSet("avedge", flag.ContinueOnError)
		fs.SetOutput(out)
		return o, err
	}
	if path != "" {
		if err := o.LoadFile(path); err != nil {
			return o, err
		}
	}
	fs := flag.NewFlagSet("avedge", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("config", "", "YAML file with the same keys as these flags (flags given here override it)")
	o.FlagSet(fs)
	fs.Usage = func() {
		fmt.Fprintf(out, "avedge: audio/video edge relay (STUN/TURN)\n\nUsage: avedge [flags]\n\nWith no flags it serves on 127.0.0.1 (UDP+TCP 3478), relays from 127.0.0.1:50000-59999,\ngenerates a shared secret and prints a credential that works at once.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("config: unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	return o, nil
}

// LoadFile merges a YAML file over o, refusing unknown keys.
func (o *Options) LoadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return o.Load(f, path)
}

// Load merges YAML from r over o, refusing unknown keys; name is used in errors.
func (o *Options) Load(r io.Reader, name string) error {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return fmt.Errorf("config: %s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(o); err != nil && !errors.Is(err, io.EOF) {
		if key := keyAtErrorLine(data, err); key != "" {
			return fmt.Errorf("config: %s: key %s: %w (keys are the flag names of avedge --help)", name, key, err)
		}
		return fmt.Errorf("config: %s: %w (keys are the flag names of avedge --help)", name, err)
	}
	return nil
}

// Settings is what Build derives from Options.
type Settings struct {
	Relay           relay.Config
	Keyring         *auth.Keyring
	Validator       *auth.Validator
	Users           map[string]string // static users, from user and users-file
	GeneratedSecret bool
	GeneratedAPIKey string // the credential service's key when none was configured (loopback only)
	AllLoopback     bool
	Service         *auth.ServiceConfig // nil: no built-in credential service
	MetricsListen   string
	AuthListen      string
}

// Build checks o and derives the relay and service settings. Errors name the key.
func (o Options) Build() (*Settings, error) {
	st := &Settings{MetricsListen: o.MetricsListen, AuthListen: o.AuthListen}
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...))
	}
	if o.MinPort < 1024 || o.MinPort > 65535 || o.MaxPort < 1024 || o.MaxPort > 65535 || o.MinPort > o.MaxPort {
		return nil, bad("min-port/max-port", "range %d-%d is not valid: need 1024 <= min-port <= max-port <= 65535", o.MinPort, o.MaxPort)
	}
	if o.ListeningPort < 0 || o.ListeningPort > 65535 {
		return nil, bad("listening-port", "%d is not a port", o.ListeningPort)
	}
	if o.TLSListeningPort < 0 || o.TLSListeningPort > 65535 {
		return nil, bad("tls-listening-port", "%d is not a port", o.TLSListeningPort)
	}
	rc := &st.Relay
	var ips []netip.Addr
	for _, s := range o.ListeningIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, bad("listening-ip", "%q is not an IP address", s)
		}
		ips = append(ips, ip.Unmap())
	}
	if len(ips) == 0 && len(o.Listen) == 0 {
		return nil, bad("listening-ip", "no address to listen on: give at least one")
	}
	if o.Cert != "" || o.PKey != "" {
		if o.Cert == "" || o.PKey == "" {
			return nil, bad("cert/pkey", "give both the certificate and the key file")
		}
		for _, kf := range [][2]string{{"cert", o.Cert}, {"pkey", o.PKey}} {
			if _, err := os.Stat(kf[1]); err != nil {
				return nil, bad(kf[0], "%v", err)
			}
		}
		c, err := tls.LoadX509KeyPair(o.Cert, o.PKey)
		if err != nil {
			return nil, bad("cert/pkey", "cannot load the key pair: %v", err)
		}
		rc.TLS = &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}
	}
	for _, ip := range ips {
		port := uint16(o.ListeningPort)
		if !o.NoUDP {
			udpIPs, err := expandWildcard(ip)
			if err != nil {
				return nil, bad("listening-ip", "%s: %v", ip, err)
			}
			for _, u := range udpIPs {
				rc.Listeners = append(rc.Listeners, relay.ListenerConfig{Network: relay.UDP, Addr: netip.AddrPortFrom(u, port)})
			}
		}
		if !o.NoTCP {
			rc.Listeners = append(rc.Listeners, relay.ListenerConfig{Network: relay.TCP, Addr: netip.AddrPortFrom(ip, port)})
		}
		if rc.TLS != nil && o.TLSListeningPort != 0 {
			rc.Listeners = append(rc.Listeners, relay.ListenerConfig{Network: relay.TLS, Addr: netip.AddrPortFrom(ip, uint16(o.TLSListeningPort))})
		}
	}
	for _, l := range o.Listen {
		netw, addr, ok := strings.Cut(l, "/")
		ap, err := netip.ParseAddrPort(addr)
		if !ok || err != nil {
			return nil, bad("listen", "%q: want transport/ip:port, e.g. tcp/0.0.0.0:443 or udp/[::1]:3478", l)
		}
		n := relay.Network(netw)
		if n != relay.UDP && n != relay.TCP && n != relay.TLS {
			return nil, bad("listen", "%q: transport %q is not udp, tcp or tls", l, netw)
		}
		if n == relay.TLS && rc.TLS == nil {
			return nil, bad("listen", "%q: a TLS listener needs cert and pkey", l)
		}
		if n == relay.UDP {
			udpIPs, err := expandWildcard(ap.Addr().Unmap())
			if err != nil {
				return nil, bad("listen", "%q: %v", l, err)
			}
			for _, u := range udpIPs {
				rc.Listeners = append(rc.Listeners, relay.ListenerConfig{Network: n, Addr: netip.AddrPortFrom(u, ap.Port())})
			}
			continue
		}
		rc.Listeners = append(rc.Listeners, relay.ListenerConfig{Network: n, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())})
	}
	if len(rc.Listeners) == 0 {
		return nil, bad("no-udp/no-tcp", "every listener is turned off")
	}
	for _, s := range o.RelayIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, bad("relay-ip", "%q is not an IP address", s)
		}
		rc.RelayIPs = append(rc.RelayIPs, ip.Unmap())
	}
	if len(rc.RelayIPs) == 0 {
		for _, ip := range ips {
			if ip.IsUnspecified() {
				return nil, bad("relay-ip", "listening on %s: name the address relay sockets bind to with relay-ip", ip)
			}
		}
		var seen [2]bool
		for _, l := range rc.Listeners {
			ip := l.Addr.Addr()
			f := 0
			if ip.Is6() {
				f = 1
			}
			if seen[f] {
				continue
			}
			if ip.IsUnspecified() {
				return nil, bad("relay-ip", "listening on %s: name the address relay sockets bind to with relay-ip", ip)
			}
			seen[f] = true
			rc.RelayIPs = append(rc.RelayIPs, ip)
		}
	}
	for _, s := range o.ExternalIPs {
		pub, priv, hasPriv := strings.Cut(s, "/")
		p, err := netip.ParseAddr(pub)
		if err != nil {
			return nil, bad("external-ip", "%q: public address does not parse", s)
		}
		var q netip.Addr
		if hasPriv {
			if q, err = netip.ParseAddr(priv); err != nil {
				return nil, bad("external-ip", "%q: private address does not parse", s)
			}
		} else {
			if len(rc.RelayIPs) != 1 {
				return nil, bad("external-ip", "%q: with several relay addresses write public/private", s)
			}
			q = rc.RelayIPs[0]
		}
		found := false
		for _, r := range rc.RelayIPs {
			found = found || r == q.Unmap()
		}
		if !found {
			return nil, bad("external-ip", "%q: %s is not a relay-ip", s, q)
		}
		if rc.ExternalIPs == nil {
			rc.ExternalIPs = map[netip.Addr]netip.Addr{}
		}
		rc.ExternalIPs[q.Unmap()] = p.Unmap()
	}
	rc.MinPort, rc.MaxPort = uint16(o.MinPort), uint16(o.MaxPort)
	rc.PortQuarantine = o.PortQuarantine
	if o.Workers < 0 {
		return nil, bad("workers", "%d: give 0 (one per two cores) or more", o.Workers)
	}
	rc.Workers = o.Workers
	rc.IdleHold = o.IdleHold
	dp, perr := relay.ParseDataPath(o.DataPath)
	if perr != nil {
		return nil, bad("data-path", "%v", perr)
	}
	rc.DataPath = dp
	rc.Realm = o.Realm
	if o.Realm == "" {
		return nil, bad("realm", "must not be empty")
	}

	// Credentials.
	var secrets []auth.Secret
	for i, v := range o.StaticAuthSecrets {
		if v == "" {
			return nil, bad("static-auth-secret", "entry %d is empty", i+1)
		}
		secrets = append(secrets, auth.Secret{ID: auth.DefaultKeyID([]byte(v)), Value: []byte(v)})
	}
	if o.SecretFile != "" {
		fs, err := auth.LoadSecretsFile(o.SecretFile)
		if err != nil {
			return nil, bad("static-auth-secret-file", "%v", err)
		}
		secrets = append(secrets, fs...)
	}
	users := map[string]string{}
	for _, u := range o.Users {
		name, pw, ok := strings.Cut(u, ":")
		if !ok || name == "" {
			return nil, bad("user", "%q: want name:password", u)
		}
		users[name] = pw
	}
	if o.UsersFile != "" {
		fu, err := auth.LoadUsersFile(o.UsersFile)
		if err != nil {
			return nil, bad("users-file", "%v", err)
		}
		for k, v := range fu {
			users[k] = v
		}
	}
	if len(secrets) == 0 && len(users) == 0 {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("config: generate a secret: %w", err)
		}
		v := []byte(hex.EncodeToString(b))
		secrets = []auth.Secret{{ID: auth.DefaultKeyID(v), Value: v}}
		st.GeneratedSecret = true
	}
	if err := auth.ValidateSecrets(secrets); err != nil {
		return nil, bad("static-auth-secret", "%v", err)
	}
	st.Keyring = auth.NewKeyring(secrets...)
	st.Users = users
	st.Validator = auth.NewValidator(auth.ValidatorConfig{Keyring: st.Keyring, Users: users, Separator: o.RESTSeparator, Skew: o.ClockSkew})
	rc.Validator = st.Validator

	// Peers.
	allLoop := true
	for _, l := range rc.Listeners {
		allLoop = allLoop && l.Addr.Addr().IsLoopback()
	}
	for _, ip := range rc.RelayIPs {
		allLoop = allLoop && ip.IsLoopback()
	}
	st.AllLoopback = allLoop
	rc.Peers.AllowLoopback = allLoop
	if o.AllowLoopbackPeers != nil {
		rc.Peers.AllowLoopback = *o.AllowLoopbackPeers
	}
	var err error
	if rc.Peers.Allow, err = policy.ParsePrefixes(o.AllowedPeerIPs); err != nil {
		return nil, bad("allowed-peer-ip", "%v", err)
	}
	if rc.Peers.Deny, err = policy.ParsePrefixes(o.DeniedPeerIPs); err != nil {
		return nil, bad("denied-peer-ip", "%v", err)
	}
	if o.TotalQuota < 0 || o.UserQuota < 0 || o.MaxBPS < 0 {
		return nil, bad("total-quota/user-quota/max-bps", "must not be negative")
	}
	rc.MaxAllocations, rc.UserQuota, rc.AllocationBandwidth = o.TotalQuota, o.UserQuota, o.MaxBPS
	rc.ChannelLifetime, rc.PermissionLifetime, rc.AllocationLifetime = o.ChannelLifetime, o.PermissionLifetime, o.AllocationLifetime

	rc.AllocateRate, rc.UnauthorizedRate = o.AllocateRate, o.UnauthorizedRate
	if o.AllocateRate == 0 || o.UnauthorizedRate == 0 {
		return nil, bad("allocate-rate/unauthorized-rate", "0 would refuse everything: give a rate, or -1 for unlimited")
	}
	if o.AlternateServer != "" {
		ap, err := netip.ParseAddrPort(o.AlternateServer)
		if err != nil {
			return nil, bad("alternate-server", "%q: want ip:port of another relay", o.AlternateServer)
		}
		rc.AlternateServer = ap
	}
	if o.MetricsListen != "" {
		if _, err := netip.ParseAddrPort(o.MetricsListen); err != nil {
			return nil, bad("metrics-listen", "%q: want ip:port, e.g. 127.0.0.1:9641", o.MetricsListen)
		}
	}
	if o.AuthListen != "" {
		if _, err := netip.ParseAddrPort(o.AuthListen); err != nil {
			return nil, bad("auth-listen", "%q: want ip:port, e.g. 127.0.0.1:8443", o.AuthListen)
		}
		keys := append([]string(nil), o.AuthAPIKeys...)
		if o.AuthAPIKeyFile != "" {
			f, err := os.Open(o.AuthAPIKeyFile)
			if err != nil {
				return nil, bad("auth-api-key-file", "%v", err)
			}
			fk, err := auth.ReadAPIKeys(f)
			f.Close()
			if err != nil {
				return nil, bad("auth-api-key-file", "%v", err)
			}
			keys = append(keys, fk...)
		}
		if len(keys) == 0 && !o.AuthAllowAnonymous {
			ap, _ := netip.ParseAddrPort(o.AuthListen)
			if !ap.Addr().IsLoopback() {
				return nil, bad("auth-api-key", "the credential service on %s needs an API key (or auth-allow-anonymous on a trusted network)", o.AuthListen)
			}
			b := make([]byte, 18)
			if _, err := rand.Read(b); err != nil {
				return nil, fmt.Errorf("config: generate an API key: %w", err)
			}
			st.GeneratedAPIKey = hex.EncodeToString(b)
			keys = []string{st.GeneratedAPIKey}
		}
		var relays []auth.RelayInfo
		for _, r := range o.AuthRelays {
			ri, err := auth.ParseRelay(r)
			if err != nil {
				return nil, bad("auth-relay", "%v", err)
			}
			relays = append(relays, ri)
		}
		// No auth-relay: Relays stays empty and the daemon lists itself as bound.
		st.Service = &auth.ServiceConfig{Keyring: st.Keyring, Relays: relays, MaxDuration: o.AuthMaxDuration,
			APIKeys: keys, AllowAnonymous: o.AuthAllowAnonymous}
	}
	switch o.LogFormat {
	case "text", "json":
	default:
		return nil, bad("log-format", "%q: want text or json", o.LogFormat)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return nil, bad("log-level", "%q: want debug, info, warn or error", o.LogLevel)
	}
	if o.DrainTimeout < 0 {
		return nil, bad("drain-timeout", "must not be negative")
	}
	return st, nil
}

// expandWildcard turns a wildcard UDP listen address into the host's addresses of that family,
// as coturn does when no listening address is given. A UDP socket bound to the wildcard
// answers from whichever source address the route picks, which on a host with several
// addresses is not always the one the client wrote to; one socket per address always answers
// from the right one. (Addresses added after start are not listened on.)
func expandWildcard(ip netip.Addr) ([]netip.Addr, error) {
	if !ip.IsUnspecified() {
		return []netip.Addr{ip}, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		u := pfx.Addr().Unmap()
		if u.Is4() != ip.Is4() || u.IsLinkLocalUnicast() || u.Zone() != "" {
			continue
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no interface address of that family to listen on")
	}
	return out, nil
}

var lineRE = regexp.MustCompile(`line (\d+)`)

// keyAtErrorLine names the top-level key on the line a YAML error points at, so that the
// message says which setting was wrong.
func keyAtErrorLine(data []byte, err error) string {
	m := lineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return ""
	}
	mp := doc.Content[0]
	key := ""
	for i := 0; i+1 < len(mp.Content); i += 2 {
		if mp.Content[i].Line <= line {
			key = mp.Content[i].Value
		}
	}
	return key
}

// yamlKeys lists the YAML keys of Options (for tests and docs).
func yamlKeys() []string {
	var keys []string
	t := reflect.TypeOf(Options{})
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("yaml"); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}
