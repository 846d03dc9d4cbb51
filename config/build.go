package config

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"

	"github.com/avedge/avedge/auth"
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
}

// Build checks o and derives the relay and service settings. Errors name the key.
//
// It first reads what o points outside itself to (read: the certificate and key, the secret,
// user and API key files, the host's addresses, fresh random bytes), then derives the
// settings from o and what was read (derive), which does no I/O.
func (o Options) Build() (*Settings, error) {
	in, err := o.read()
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
		rc.TLS = &tls.Config{Certificates: []tls.Certificate{*in.cert}, MinVersion: tls.VersionTLS12}
	}
	var err error
	if rc.Listeners, err = o.listeners(rc.TLS != nil, in.host); err != nil {
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
	if st.Service, st.GeneratedAPIKey, err = o.service(st.Keyring, in); err != nil {
		return nil, err
	}
	return st, o.checkProcess()
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

// parseListen reads one listen entry, transport/ip:port.
func parseListen(l string, withTLS bool, host hostAddrs) ([]relay.ListenerConfig, error) {
	netw, addr, ok := strings.Cut(l, "/")
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
	if n == relay.UDP {
		udp, err := host.expand(ap.Addr().Unmap(), ap.Port())
		if err != nil {
			return nil, bad("listen", "%q: %v", l, err)
		}
		return udp, nil
	}
	return []relay.ListenerConfig{{Network: n, Addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}}, nil
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
	for _, u := range o.Users {
		name, pw, ok := strings.Cut(u, ":")
		if !ok || name == "" {
			return bad("user", "%q: want name:password", u)
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
	if o.TotalQuota < 0 || o.UserQuota < 0 || o.MaxBPS < 0 {
		return bad("total-quota/user-quota/max-bps", "must not be negative")
	}
	rc.MaxAllocations, rc.UserQuota, rc.AllocationBandwidth = o.TotalQuota, o.UserQuota, o.MaxBPS
	rc.ChannelLifetime, rc.PermissionLifetime, rc.AllocationLifetime = o.ChannelLifetime, o.PermissionLifetime, o.AllocationLifetime
	if o.MaxPermissions == 0 || o.MaxChannels == 0 || o.PermissionRate == 0 {
		return bad("max-permissions/max-channels/permission-rate", "0 would refuse every permission or channel: give a limit, or -1 for unlimited")
	}
	rc.MaxPermissions, rc.MaxChannels, rc.PermissionRate = o.MaxPermissions, o.MaxChannels, o.PermissionRate
	rc.AllocateRate, rc.UnauthorizedRate = o.AllocateRate, o.UnauthorizedRate
	if o.AllocateRate == 0 || o.UnauthorizedRate == 0 {
		return bad("allocate-rate/unauthorized-rate", "0 would refuse everything: give a rate, or -1 for unlimited")
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

// service checks metrics-listen and derives the credential service's settings (nil when
// auth-listen is empty), with the API key generated for it when it needs one it was not
// given.
func (o Options) service(kr *auth.Keyring, in *inputs) (*auth.ServiceConfig, string, error) {
	if o.MetricsListen != "" {
		if _, err := netip.ParseAddrPort(o.MetricsListen); err != nil {
			return nil, "", bad("metrics-listen", "%q: want ip:port, e.g. 127.0.0.1:9641", o.MetricsListen)
		}
	}
	if o.AuthListen == "" {
		return nil, "", nil
	}
	ap, err := netip.ParseAddrPort(o.AuthListen)
	if err != nil {
		return nil, "", bad("auth-listen", "%q: want ip:port, e.g. 127.0.0.1:8443", o.AuthListen)
	}
	keys := append(append([]string(nil), o.AuthAPIKeys...), in.fileAPIKeys...)
	generated := ""
	if len(keys) == 0 && !o.AuthAllowAnonymous {
		if !ap.Addr().IsLoopback() {
			return nil, "", bad("auth-api-key", "the credential service on %s needs an API key (or auth-allow-anonymous on a trusted network)", o.AuthListen)
		}
		generated = in.randomAPIKey
		keys = []string{generated}
	}
	var relays []auth.RelayInfo
	for _, r := range o.AuthRelays {
		ri, err := auth.ParseRelay(r)
		if err != nil {
			return nil, "", bad("auth-relay", "%v", err)
		}
		relays = append(relays, ri)
	}
	// No auth-relay: Relays stays empty and the daemon lists itself as bound.
	return &auth.ServiceConfig{Keyring: kr, Relays: relays, MaxDuration: o.AuthMaxDuration,
		APIKeys: keys, AllowAnonymous: o.AuthAllowAnonymous}, generated, nil
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
