package config

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
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
