package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/pool"
	"github.com/avedge/avedge/relay"
	"github.com/avedge/avedge/relay/policy"
)

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
	// AuthTLS is the credential service's certificate and key, read from AuthTLSCert and
	// AuthTLSKey (auth-tls-cert, auth-tls-key) at Build; its Reload re-reads the same files.
	// Nil (and both names ""): the service speaks plain HTTP.
	AuthTLS                 *auth.Certificate
	AuthTLSCert, AuthTLSKey string
	// TLS is the TURN TLS listeners' certificate and key, read from TLSCert and TLSKey (cert,
	// pkey) at Build; Relay.TLS serves its current pair, and its Reload re-reads the same
	// files. Nil (and both names ""): no TLS listener.
	TLS             *auth.Certificate
	TLSCert, TLSKey string
	// Admin is the admin API's settings (admin-listen, admin-socket, ...).
	Admin AdminSettings
	// NonLoopback names the first listener not on loopback: a TURN listener
	// ("udp/192.0.2.1:3478"), the credential service ("auth-listen 0.0.0.0:8443") or the
	// metrics endpoint; "" when every one is on loopback. While one is not, no secret and no
	// credential is to be printed: what a daemon prints ends up in logs that others read, and
	// the relay serves more than this host.
	NonLoopback string
	// Pool is how this process joins the pool (package pool): its load document's static
	// fields, the monitor of the other members (nil Monitor: none configured) and the
	// redirect threshold.
	Pool PoolSettings
	// Warnings are what is accepted but unsafe, one sentence each, for the log: secrets given
	// on the command line or inline in a config file others can read, files of secrets others
	// can read that allow-readable-secrets let through.
	Warnings []string
}

// AdminSettings are the admin API's: where it listens, the keys it takes, its TLS pair and
// the revocations file. Listen and Socket both "": no admin API.
type AdminSettings struct {
	Listen string   // ip:port; "": none
	Socket string   // Unix socket path; "": none
	Keys   []string // bearer tokens (admin-api-key and the file's); at least one when Listen is set
	// TLS is the pair read from TLSCert and TLSKey; nil: plain HTTP.
	TLS             *auth.Certificate
	TLSCert, TLSKey string
	RevocationsFile string // "": revocations in memory
}

// PoolSettings are the pool options, checked.
type PoolSettings struct {
	// Monitor polls the pool; nil when neither pool-member nor pool-discover is set.
	Monitor *pool.MonitorConfig
	// Zone, Relays, Alternates and MaxBPS go into this relay's load document; Relays and
	// Alternates empty: derived from the listeners once bound.
	Zone       string
	Relays     []pool.Endpoint
	Alternates []string
	MaxBPS     float64
	// RedirectThreshold is the load score over which Allocates are redirected; 0: off.
	RedirectThreshold float64
}

// Build checks o and derives the relay and service settings. Errors name the key.
//
// It first reads what o points outside itself to (read: the certificate and key, the secret,
// user and API key files, the host's addresses, fresh random bytes), then derives the
// settings from o and what was read (derive), which does no I/O.
func (o Options) Build() (*Settings, error) {
	in, err := o.read(false)
	if err != nil {
		return nil, err
	}
	return o.derive(in)
}

// BuildForReload is Build for a configuration re-read while the relay runs (SIGHUP): it reads
// neither TLS pair (cert and pkey, auth-tls-cert and auth-tls-key), which the running
// listeners re-read on their own from the files they started with, so that a pair caught
// half-renewed does not hold back a secret rotation, nor the reverse. The Settings it returns
// have no TLS, AuthTLS or Relay.TLS; the rest is checked as Build checks it.
func (o Options) BuildForReload() (*Settings, error) {
	in, err := o.read(true)
	if err != nil {
		return nil, err
	}
	return o.derive(in)
}

// bad is an error in the value of key.
func bad(key, format string, args ...any) error {
	return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, args...))
}

// derive checks o and derives the settings, given what read read.
func (o Options) derive(in *inputs) (*Settings, error) {
	if o.MinPort < 1024 || o.MinPort > 65535 || o.MaxPort < 1024 || o.MaxPort > 65535 || o.MinPort > o.MaxPort {
		return nil, bad("min-port/max-port", "range %d-%d is not valid: need 1024 <= min-port <= max-port <= 65535", o.MinPort, o.MaxPort)
	}
	st := &Settings{MetricsListen: o.MetricsListen, AuthListen: o.AuthListen}
	rc := &st.Relay
	if in.cert != nil {
		st.TLS, st.TLSCert, st.TLSKey = in.cert, o.Cert, o.PKey
		rc.TLS = in.cert.TLSConfig()
	}
	withTLS := in.cert != nil || in.skipTLSFiles && o.Cert != "" && o.PKey != ""
	var err error
	if rc.Listeners, err = o.listeners(withTLS, in.host); err != nil {
		return nil, err
	}
	if err := o.relayAddresses(rc); err != nil {
		return nil, err
	}
	if err := o.forwarding(rc); err != nil {
		return nil, err
	}
	if err := o.credentials(st, in); err != nil {
		return nil, err
	}
	rc.Validator = st.Validator
	if err := o.peersAndLimits(st); err != nil {
		return nil, err
	}
	if err := o.service(st, in); err != nil {
		return nil, err
	}
	if err := o.adminAPI(st, in); err != nil {
		return nil, err
	}
	if err := o.pool(st); err != nil {
		return nil, err
	}
	if err := o.portsOutsideRange(rc.Listeners); err != nil {
		return nil, err
	}
	st.NonLoopback = o.nonLoopback(rc.Listeners)
	st.Warnings = append(append(slices.Clone(o.notes), in.warnings...), st.Warnings...)
	return st, o.checkProcess()
}

// nonLoopback names the first of the listeners (TURN, then auth-listen and metrics-listen,
// which service has checked) that is not on loopback; "" when every one is.
func (o Options) nonLoopback(listeners []relay.ListenerConfig) string {
	for _, l := range listeners {
		if !l.Addr.Addr().IsLoopback() {
			return string(l.Network) + "/" + l.Addr.String()
		}
	}
	for _, kv := range [][2]string{{"auth-listen", o.AuthListen}, {"metrics-listen", o.MetricsListen}, {"admin-listen", o.AdminListen}} {
		if ap, err := netip.ParseAddrPort(kv[1]); err == nil && !ap.Addr().Unmap().IsLoopback() {
			return kv[0] + " " + kv[1]
		}
	}
	return ""
}

// portsOutsideRange refuses a listener whose port lies in the relay range: portalloc would
// find that port taken, and a client could name the listener as a peer on the relay's own
// address, where only relay ports are let through.
func (o Options) portsOutsideRange(turn []relay.ListenerConfig) error {
	for _, l := range turn {
		if p := int(l.Addr.Port()); p >= o.MinPort && p <= o.MaxPort {
			return bad("listening-port/tls-listening-port/listen", "%s/%s: port %d is inside the relay range %d-%d (min-port/max-port): move the listener or the range",
				l.Network, l.Addr, p, o.MinPort, o.MaxPort)
		}
	}
	for _, l := range []struct{ key, addr string }{{"metrics-listen", o.MetricsListen}, {"auth-listen", o.AuthListen}, {"admin-listen", o.AdminListen}} {
		ap, err := netip.ParseAddrPort(l.addr)
		if err != nil {
			continue // empty, or refused above
		}
		if p := int(ap.Port()); p >= o.MinPort && p <= o.MaxPort {
			return bad(l.key, "port %d is inside the relay range %d-%d (min-port/max-port): move the listener or the range", p, o.MinPort, o.MaxPort)
		}
	}
	return nil
}

// listeners derives the listening addresses from listening-ip, the ports, no-udp/no-tcp and
// listen. A wildcard UDP address becomes one listener per address of the host (host).
func (o Options) listeners(withTLS bool, host hostAddrs) ([]relay.ListenerConfig, error) {
	if o.ListeningPort < 0 || o.ListeningPort > 65535 {
		return nil, bad("listening-port", "%d is not a port", o.ListeningPort)
	}
	if o.TLSListeningPort < 0 || o.TLSListeningPort > 65535 {
		return nil, bad("tls-listening-port", "%d is not a port", o.TLSListeningPort)
	}
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
	if (o.Cert != "" || o.PKey != "") && (o.Cert == "" || o.PKey == "") {
		return nil, bad("cert/pkey", "give both the certificate and the key file")
	}
	var ls []relay.ListenerConfig
	for _, ip := range ips {
		if !o.NoUDP {
			udp, err := host.expand(ip, uint16(o.ListeningPort))
			if err != nil {
				return nil, bad("listening-ip", "%s: %v", ip, err)
			}
			ls = append(ls, udp...)
		}
		if !o.NoTCP {
			ls = append(ls, relay.ListenerConfig{Network: relay.TCP, Addr: netip.AddrPortFrom(ip, uint16(o.ListeningPort))})
		}
		if withTLS && o.TLSListeningPort != 0 {
			ls = append(ls, relay.ListenerConfig{Network: relay.TLS, Addr: netip.AddrPortFrom(ip, uint16(o.TLSListeningPort))})
		}
	}
	for _, l := range o.Listen {
		extra, err := parseListen(l, withTLS, host)
		if err != nil {
			return nil, err
		}
		ls = append(ls, extra...)
	}
	if len(ls) == 0 {
		return nil, bad("no-udp/no-tcp", "every listener is turned off")
	}
	return ls, nil
}

// parseListen reads one listen entry, transport/ip:port, with ",proxy" after a tcp or tls
// one that takes the PROXY protocol from proxy-protocol-from.
func parseListen(l string, withTLS bool, host hostAddrs) ([]relay.ListenerConfig, error) {
	spec, opt, hasOpt := strings.Cut(l, ",")
	if hasOpt && opt != "proxy" {
		return nil, bad("listen", "%q: unknown option %q after the address (want proxy)", l, opt)
	}
	netw, addr, ok := strings.Cut(spec, "/")
	ap, err := netip.ParseAddrPort(addr)
	if !ok || err != nil {
		return nil, bad("listen", "%q: want transport/ip:port, e.g. tcp/0.0.0.0:443 or udp/[::1]:3478", l)
	}
	n := relay.Network(netw)
	if n != relay.UDP && n != relay.TCP && n != relay.TLS {
		return nil, bad("listen", "%q: transport %q is not udp, tcp or tls", l, netw)
	}
	if n == relay.TLS && !withTLS {
		return nil, bad("listen", "%q: a TLS listener needs cert and pkey", l)
	}
	if n == relay.UDP && hasOpt {
		return nil, bad("listen", "%q: the PROXY protocol is for tcp and tls listeners", l)
	}
	if n == relay.UDP {
		udp, err := host.expand(ap.Addr().Unmap(), ap.Port())
		if err != nil {
			return nil, bad("listen", "%q: %v", l, err)
		}
		return udp, nil
	}
	return []relay.ListenerConfig{{Network: n, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ProxyProtocol: hasOpt}}, nil
}

// relayAddresses derives the relay addresses (relay-ip, else the first listener of each
// family), their advertised addresses (external-ip) and the port range.
func (o Options) relayAddresses(rc *relay.Config) error {
	rc.MinPort, rc.MaxPort = uint16(o.MinPort), uint16(o.MaxPort) // checked by derive
	for _, s := range o.RelayIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return bad("relay-ip", "%q is not an IP address", s)
		}
		rc.RelayIPs = append(rc.RelayIPs, ip.Unmap())
	}
	if len(rc.RelayIPs) == 0 {
		for _, s := range o.ListeningIPs { // parsed by listeners
			if ip, _ := netip.ParseAddr(s); ip.IsUnspecified() {
				return bad("relay-ip", "listening on %s: name the address relay sockets bind to with relay-ip", ip.Unmap())
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
				return bad("relay-ip", "listening on %s: name the address relay sockets bind to with relay-ip", ip)
			}
			seen[f] = true
			rc.RelayIPs = append(rc.RelayIPs, ip)
		}
	}
	for _, s := range o.ExternalIPs {
		pub, priv, err := parseExternal(s, rc.RelayIPs)
		if err != nil {
			return err
		}
		if rc.ExternalIPs == nil {
			rc.ExternalIPs = map[netip.Addr]netip.Addr{}
		}
		rc.ExternalIPs[priv] = pub
	}
	return nil
}

// parseExternal reads one external-ip entry, public[/private]; private must be a relay address.
func parseExternal(s string, relayIPs []netip.Addr) (pub, priv netip.Addr, err error) {
	ps, qs, hasPriv := strings.Cut(s, "/")
	p, err := netip.ParseAddr(ps)
	if err != nil {
		return pub, priv, bad("external-ip", "%q: public address does not parse", s)
	}
	var q netip.Addr
	switch {
	case hasPriv:
		if q, err = netip.ParseAddr(qs); err != nil {
			return pub, priv, bad("external-ip", "%q: private address does not parse", s)
		}
	case len(relayIPs) != 1:
		return pub, priv, bad("external-ip", "%q: with several relay addresses write public/private", s)
	default:
		q = relayIPs[0]
	}
	for _, r := range relayIPs {
		if r == q.Unmap() {
			return p.Unmap(), q.Unmap(), nil
		}
	}
	return pub, priv, bad("external-ip", "%q: %s is not a relay-ip", s, q)
}

// forwarding copies the forwarding loops' settings: their zero values mean what
// relay.Config's mean.
func (o Options) forwarding(rc *relay.Config) error {
	rc.PortQuarantine = o.PortQuarantine
	if o.Workers < 0 {
		return bad("workers", "%d: give 0 (one per two cores) or more", o.Workers)
	}
	rc.Workers = o.Workers
	rc.IdleHold = o.IdleHold
	dp, err := relay.ParseDataPath(o.DataPath)
	if err != nil {
		return bad("data-path", "%v", err)
	}
	rc.DataPath = dp
	rc.OffloadGateway = o.OffloadGateway
	if rc.OffloadAttach, err = relay.ParseOffloadAttach(o.OffloadAttach); err != nil {
		return bad("offload-attach", "%v", err)
	}
	return nil
}

// credentials derives the realm, the shared secrets (static-auth-secret, then the file's; a
// generated one when there is neither a secret nor a user) and the static users (user, then
// the file's over them).
func (o Options) credentials(st *Settings, in *inputs) error {
	st.Relay.Realm = o.Realm
	if o.Realm == "" {
		return bad("realm", "must not be empty")
	}
	var secrets []auth.Secret
	for i, v := range o.StaticAuthSecrets {
		if v == "" {
			return bad("static-auth-secret", "entry %d is empty", i+1)
		}
		secrets = append(secrets, auth.Secret{ID: auth.DefaultKeyID([]byte(v)), Value: []byte(v)})
	}
	secrets = append(secrets, in.fileSecrets...)
	users := map[string]string{}
	for i, u := range o.Users {
		name, pw, ok := strings.Cut(u, ":")
		if !ok || name == "" {
			// Not the entry itself: without its colon it may be all password.
			return bad("user", "entry %d: want name:password", i+1)
		}
		users[name] = pw
	}
	for k, v := range in.fileUsers {
		users[k] = v
	}
	if len(secrets) == 0 && len(users) == 0 {
		v := []byte(in.randomSecret)
		secrets = []auth.Secret{{ID: auth.DefaultKeyID(v), Value: v}}
		st.GeneratedSecret = true
	}
	if err := auth.ValidateSecrets(secrets); err != nil {
		return bad("static-auth-secret", "%v", err)
	}
	st.Keyring = auth.NewKeyring(secrets...)
	st.Users = users
	st.Validator = auth.NewValidator(auth.ValidatorConfig{Keyring: st.Keyring, Users: users, Separator: o.RESTSeparator, Skew: o.ClockSkew})
	return nil
}

// peersAndLimits derives the peer policy (loopback peers allowed by default only when every
// listener and relay address is loopback), the quotas, lifetimes and rate limits, and the
// alternate server.
func (o Options) peersAndLimits(st *Settings) error {
	rc := &st.Relay
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
		return bad("allowed-peer-ip", "%v", err)
	}
	if rc.Peers.Deny, err = policy.ParsePrefixes(o.DeniedPeerIPs); err != nil {
		return bad("denied-peer-ip", "%v", err)
	}
	if rc.ProxyProtocolFrom, err = policy.ParsePrefixes(o.ProxyProtocolFrom); err != nil {
		return bad("proxy-protocol-from", "%v", err)
	}
	proxied := false
	for _, l := range rc.Listeners {
		proxied = proxied || l.ProxyProtocol
	}
	switch {
	case proxied && len(rc.ProxyProtocolFrom) == 0:
		return bad("listen", "a listener takes the PROXY protocol (,proxy) but proxy-protocol-from names no load balancer")
	case !proxied && len(rc.ProxyProtocolFrom) > 0:
		st.Warnings = append(st.Warnings, "proxy-protocol-from is set but no listen entry takes the PROXY protocol (add ,proxy to a tcp or tls one)")
	}
	if o.UserQuota == 0 || o.MaxBPS == 0 {
		return bad("user-quota/max-bps", "0 is refused: give a limit, or -1 for unlimited")
	}
	rc.MaxAllocations, rc.UserQuota, rc.AllocationBandwidth = o.TotalQuota, o.UserQuota, o.MaxBPS
	rc.ChannelLifetime, rc.PermissionLifetime, rc.AllocationLifetime = o.ChannelLifetime, o.PermissionLifetime, o.AllocationLifetime
	if o.MaxPermissions == 0 || o.MaxChannels == 0 || o.PermissionRate == 0 {
		return bad("max-permissions/max-channels/permission-rate", "0 would refuse every permission or channel: give a limit, or -1 for unlimited")
	}
	rc.MaxPermissions, rc.MaxChannels, rc.PermissionRate = o.MaxPermissions, o.MaxChannels, o.PermissionRate
	rc.AllocateRate, rc.UnauthorizedRate, rc.RequestRate = o.AllocateRate, o.UnauthorizedRate, o.RequestRate
	rc.ControlShards, rc.NewWorkShards = o.ControlShards, o.NewWorkShards
	if o.AllocateRate == 0 || o.UnauthorizedRate == 0 || o.RequestRate == 0 {
		return bad("allocate-rate/unauthorized-rate/request-rate", "0 would refuse everything: give a rate, or -1 for unlimited")
	}
	if o.MaxTCPConnections < 0 || o.MaxTCPConnectionsPerSource < 0 {
		return bad("max-tcp-connections/max-tcp-connections-per-source", "must not be negative (0: unlimited)")
	}
	rc.MaxStreamConns, rc.MaxStreamConnsPerSource = unlimitedIfZero(o.MaxTCPConnections), unlimitedIfZero(o.MaxTCPConnectionsPerSource)
	rc.StreamFirstMessageTimeout, rc.StreamIdleTimeout, rc.TLSHandshakeTimeout = o.TCPFirstMessageTimeout, o.TCPIdleTimeout, o.TLSHandshakeTimeout
	rc.StreamWriteTimeout = o.TCPWriteTimeout
	rc.NoTCPRelay, rc.TCPRelayIdleTimeout = o.NoTCPRelay, o.TCPRelayIdleTimeout
	rc.MaxTCPRelayConns, rc.MaxTCPRelayConnsPerUser, rc.MaxTCPRelayConnsPerAllocation = o.MaxTCPRelayConns, o.MaxTCPRelayConnsPerUser, o.MaxTCPRelayConnsPerAllocation
	rc.ErrorRate, rc.BindingRate = o.ErrorRate, o.BindingRate
	if o.ErrorRate == 0 || o.BindingRate == 0 {
		return bad("error-rate/binding-rate", "0 would refuse everything: give a rate, or -1 for unlimited")
	}
	rc.StaticUserFailures, rc.StaticUserLockout = o.UserLockoutFailures, o.UserLockoutTime
	if o.UserLockoutFailures == 0 {
		return bad("user-lockout-failures", "0 would refuse every static user: give a count, or -1 for no lockout")
	}
	if o.UserLockoutTime <= 0 {
		return bad("user-lockout-time", "must be positive")
	}
	if o.AlternateServer != "" {
		ap, err := netip.ParseAddrPort(o.AlternateServer)
		if err != nil {
			return bad("alternate-server", "%q: want ip:port of another relay", o.AlternateServer)
		}
		rc.AlternateServer = ap
	}
	return nil
}

// service checks metrics-listen and derives the credential service's settings (st.Service
// stays nil when auth-listen is empty): its API keys, with one generated when it needs one it
// was not given, anonymous mode (only on loopback unless auth-insecure-anonymous, which draws
// a warning), and its TLS pair as read.
func (o Options) service(st *Settings, in *inputs) error {
	if o.MetricsListen != "" {
		if _, err := netip.ParseAddrPort(o.MetricsListen); err != nil {
			return bad("metrics-listen", "%q: want ip:port, e.g. 127.0.0.1:9641", o.MetricsListen)
		}
	}
	if o.AuthListen == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(o.AuthListen)
	if err != nil {
		return bad("auth-listen", "%q: want ip:port, e.g. 127.0.0.1:8443", o.AuthListen)
	}
	if (o.AuthTLSCert == "") != (o.AuthTLSKey == "") {
		return bad("auth-tls-cert/auth-tls-key", "give both the certificate and the key file, or neither")
	}
	st.AuthTLS = in.authCert
	if st.AuthTLS != nil {
		st.AuthTLSCert, st.AuthTLSKey = o.AuthTLSCert, o.AuthTLSKey
	}
	anonymous := o.AuthAllowAnonymous || o.AuthInsecureAnonymous
	if anonymous {
		err := auth.CheckAnonymousListen(net.TCPAddrFromAddrPort(ap))
		switch {
		case err != nil && !o.AuthInsecureAnonymous:
			return bad("auth-allow-anonymous", "auth-listen %s is not a loopback address: anyone who reaches it would get credentials; "+
				"give auth-api-key-file, listen on loopback, or force it with auth-insecure-anonymous", o.AuthListen)
		case err != nil:
			st.Warnings = append(st.Warnings, fmt.Sprintf("auth-insecure-anonymous: the credential service on %s, not a loopback address, "+
				"hands credentials without an API key to anyone who reaches it", o.AuthListen))
		}
	}
	keys := append(append([]string(nil), o.AuthAPIKeys...), in.fileAPIKeys...)
	if len(keys) == 0 && !anonymous {
		if !ap.Addr().IsLoopback() {
			return bad("auth-api-key", "the credential service on %s needs an API key: give auth-api-key-file, or listen on loopback", o.AuthListen)
		}
		st.GeneratedAPIKey = in.randomAPIKey
		keys = []string{st.GeneratedAPIKey}
	}
	var relays []auth.RelayInfo
	for _, r := range o.AuthRelays {
		ri, err := auth.ParseRelay(r)
		if err != nil {
			return bad("auth-relay", "%v", err)
		}
		relays = append(relays, ri)
	}
	// No auth-relay: Relays stays empty and the daemon lists itself as bound.
	st.Service = &auth.ServiceConfig{Keyring: st.Keyring, Relays: relays, MaxDuration: o.AuthMaxDuration,
		APIKeys: keys, AllowAnonymous: anonymous}
	return nil
}

// adminAPI checks and derives the admin API's settings: a network listener needs an API key
// (there is no generated one: the API ends allocations and revokes credentials), and draws a
// warning without TLS off loopback; the Unix socket needs none.
func (o Options) adminAPI(st *Settings, in *inputs) error {
	a := &st.Admin
	a.Socket, a.RevocationsFile = o.AdminSocket, o.RevocationsFile
	if o.AdminListen == "" {
		return nil
	}
	ap, err := netip.ParseAddrPort(o.AdminListen)
	if err != nil {
		return bad("admin-listen", "%q: want ip:port, e.g. 127.0.0.1:9443", o.AdminListen)
	}
	if (o.AdminTLSCert == "") != (o.AdminTLSKey == "") {
		return bad("admin-tls-cert/admin-tls-key", "give both the certificate and the key file, or neither")
	}
	a.Listen = o.AdminListen
	a.Keys = append(append([]string(nil), o.AdminAPIKeys...), in.adminAPIKeys...)
	if len(a.Keys) == 0 {
		return bad("admin-api-key", "the admin API on %s needs an API key: give admin-api-key-file (or use admin-socket, which needs none)", o.AdminListen)
	}
	a.TLS = in.adminCert
	if a.TLS != nil {
		a.TLSCert, a.TLSKey = o.AdminTLSCert, o.AdminTLSKey
	} else if !ap.Addr().Unmap().IsLoopback() && !in.skipTLSFiles {
		st.Warnings = append(st.Warnings, fmt.Sprintf("admin-listen %s is not a loopback address and has no TLS: its API key crosses the network in clear; give admin-tls-cert and admin-tls-key", o.AdminListen))
	}
	return nil
}

// checkProcess checks the settings of the process itself: logging and the drain.
func (o Options) checkProcess() error {
	switch o.LogFormat {
	case "text", "json":
	default:
		return bad("log-format", "%q: want text or json", o.LogFormat)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log-level", "%q: want debug, info, warn or error", o.LogLevel)
	}
	if o.DrainTimeout < 0 {
		return bad("drain-timeout", "must not be negative")
	}
	return nil
}

// unlimitedIfZero maps an option's 0 (unlimited) to relay.Config's negative (unlimited; its
// zero is a default).
func unlimitedIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// pool checks the pool options and derives st.Pool.
func (o Options) pool(st *Settings) error {
	p := &st.Pool
	p.Zone, p.MaxBPS, p.RedirectThreshold = o.PoolZone, o.PoolMaxBPS, o.PoolRedirectThreshold
	if o.PoolRedirectThreshold < 0 || o.PoolRedirectThreshold > 1 {
		return bad("pool-redirect-threshold", "%v: want a load score between 0 (off) and 1", o.PoolRedirectThreshold)
	}
	if o.PoolMaxBPS < 0 {
		return bad("pool-max-bps", "must not be negative")
	}
	for _, r := range o.PoolRelays {
		ri, err := auth.ParseRelay(r)
		if err != nil {
			return bad("pool-relay", "%v", err)
		}
		p.Relays = append(p.Relays, pool.Endpoint{Location: ri.Location, HostName: ri.HostName, UDPPort: ri.UDPPort, TCPPort: ri.TCPPort})
	}
	for _, a := range o.PoolAlternates {
		if ap, err := netip.ParseAddrPort(a); err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return bad("pool-alternate", "%q: want the ip:port of this relay's UDP listener", a)
		}
	}
	p.Alternates = o.PoolAlternates
	if len(p.Alternates) == 0 {
		for _, e := range p.Relays {
			if ip, err := netip.ParseAddr(e.HostName); err == nil && e.UDPPort != 0 {
				p.Alternates = append(p.Alternates, netip.AddrPortFrom(ip, uint16(e.UDPPort)).String())
			}
		}
	}
	if len(o.PoolMembers) == 0 && o.PoolDiscover == "" {
		if o.PoolRedirectThreshold > 0 {
			return bad("pool-redirect-threshold", "needs the pool: give pool-member or pool-discover")
		}
		return nil
	}
	mc := pool.MonitorConfig{URLs: o.PoolMembers, Discover: o.PoolDiscover, Interval: o.PoolInterval, Timeout: o.PoolTimeout,
		FailAfter: o.PoolFailAfter, Hysteresis: o.PoolHysteresis, Zone: o.PoolZone}
	if _, err := pool.NewMonitor(mc); err != nil {
		return bad("pool-member/pool-discover/pool-interval/pool-timeout/pool-fail-after/pool-hysteresis", "%v", err)
	}
	p.Monitor = &mc
	return nil
}
