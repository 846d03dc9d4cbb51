package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/secretfile"
	"github.com/avedge/avedge/relay"
)

// inputs is what Build reads outside Options: the files it names, the host's addresses and
// random bytes. derive takes them from here and does no I/O.
type inputs struct {
	cert        *auth.Certificate // cert and pkey, when both are set (and not skipTLSFiles)
	fileSecrets []auth.Secret     // static-auth-secret-file
	fileUsers   map[string]string // users-file
	fileAPIKeys []string          // auth-api-key-file, read when auth-listen is set
	authCert    *auth.Certificate // auth-tls-cert and auth-tls-key, when auth-listen and both are set (and not skipTLSFiles)
	// skipTLSFiles: the TLS pairs are not read (BuildForReload): the running listeners
	// re-read theirs on their own.
	skipTLSFiles bool
	adminAPIKeys []string          // admin-api-key-file, read when admin-listen is set
	adminCert    *auth.Certificate // admin-tls-cert and admin-tls-key, when admin-listen and both are set (and not skipTLSFiles)
	host         hostAddrs
	randomSecret string // the shared secret used when none is configured
	randomAPIKey string // the credential service's key when it needs one and has none
	// warnings name the files of secrets others can read that allow-readable-secrets let
	// through.
	warnings []string
}

// read reads what o names: each file only when the option that uses it is set. A file of
// secrets is read only when no one but its owner can read it, or allow-readable-secrets.
func (o Options) read(skipTLSFiles bool) (*inputs, error) {
	in := &inputs{skipTLSFiles: skipTLSFiles}
	if o.Cert != "" && o.PKey != "" && !skipTLSFiles {
		for _, kf := range [][2]string{{"cert", o.Cert}, {"pkey", o.PKey}} {
			if _, err := os.Stat(kf[1]); err != nil {
				return nil, bad(kf[0], "%v", err)
			}
		}
		if err := o.checkPrivate("pkey", o.PKey, in); err != nil {
			return nil, err
		}
		c, err := auth.LoadCertificate(o.Cert, o.PKey)
		if err != nil {
			return nil, bad("cert/pkey", "cannot load the key pair: %v", err)
		}
		in.cert = c
	}
	var err error
	if o.SecretFile != "" {
		if err := o.checkPrivate("static-auth-secret-file", o.SecretFile, in); err != nil {
			return nil, err
		}
		if in.fileSecrets, err = auth.LoadSecretsFile(o.SecretFile); err != nil {
			return nil, bad("static-auth-secret-file", "%v", err)
		}
	}
	if o.UsersFile != "" {
		if err := o.checkPrivate("users-file", o.UsersFile, in); err != nil {
			return nil, err
		}
		if in.fileUsers, err = auth.LoadUsersFile(o.UsersFile); err != nil {
			return nil, bad("users-file", "%v", err)
		}
	}
	if o.AuthListen != "" && o.AuthAPIKeyFile != "" {
		if err := o.checkPrivate("auth-api-key-file", o.AuthAPIKeyFile, in); err != nil {
			return nil, err
		}
		f, err := os.Open(o.AuthAPIKeyFile)
		if err != nil {
			return nil, bad("auth-api-key-file", "%v", err)
		}
		in.fileAPIKeys, err = auth.ReadAPIKeys(f)
		f.Close()
		if err != nil {
			return nil, bad("auth-api-key-file", "%v", err)
		}
	}
	if o.AuthListen != "" && o.AuthTLSCert != "" && o.AuthTLSKey != "" && !skipTLSFiles {
		if err := o.checkPrivate("auth-tls-key", o.AuthTLSKey, in); err != nil {
			return nil, err
		}
		if in.authCert, err = auth.LoadCertificate(o.AuthTLSCert, o.AuthTLSKey); err != nil {
			return nil, bad("auth-tls-cert", "%v", err)
		}
	}
	if err := o.readAdmin(in); err != nil {
		return nil, err
	}
	in.host = readHostAddrs()
	if in.randomSecret, err = randomHex(24); err != nil {
		return nil, fmt.Errorf("config: generate a secret: %w", err)
	}
	if in.randomAPIKey, err = randomHex(18); err != nil {
		return nil, fmt.Errorf("config: generate an API key: %w", err)
	}
	return in, nil
}

// readAdmin reads the admin API's key file and TLS pair, when admin-listen is set.
func (o Options) readAdmin(in *inputs) error {
	if o.AdminListen == "" {
		return nil
	}
	var err error
	if o.AdminAPIKeyFile != "" {
		if err := o.checkPrivate("admin-api-key-file", o.AdminAPIKeyFile, in); err != nil {
			return err
		}
		f, err := os.Open(o.AdminAPIKeyFile)
		if err != nil {
			return bad("admin-api-key-file", "%v", err)
		}
		in.adminAPIKeys, err = auth.ReadAPIKeys(f)
		f.Close()
		if err != nil {
			return bad("admin-api-key-file", "%v", err)
		}
	}
	if o.AdminTLSCert != "" && o.AdminTLSKey != "" && !in.skipTLSFiles {
		if err := o.checkPrivate("admin-tls-key", o.AdminTLSKey, in); err != nil {
			return err
		}
		if in.adminCert, err = auth.LoadCertificate(o.AdminTLSCert, o.AdminTLSKey); err != nil {
			return bad("admin-tls-cert", "%v", err)
		}
	}
	return nil
}

// checkPrivate refuses the file of secrets path (the value of option key) when users other
// than its owner can read or write it, unless allow-readable-secrets: then it adds a warning.
func (o Options) checkPrivate(key, path string, in *inputs) error {
	err := secretfile.Check(path)
	var exposed *secretfile.ExposedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exposed) && o.AllowReadableSecrets:
		in.warnings = append(in.warnings, key+": "+exposed.Warning())
		return nil
	}
	return bad(key, "%v", err)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// hostAddrs is the host's interface addresses, or why they could not be listed.
type hostAddrs struct {
	addrs []netip.Addr
	err   error
}

func readHostAddrs() hostAddrs {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return hostAddrs{err: fmt.Errorf("list interface addresses: %w", err)}
	}
	var h hostAddrs
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			h.addrs = append(h.addrs, pfx.Addr().Unmap())
		}
	}
	return h
}

// expand makes the UDP listeners for ip:port: one, or for a wildcard one per address of the
// host of that family, as coturn does when no listening address is given. A UDP socket bound
// to the wildcard answers from whichever source address the route picks, which on a host with
// several addresses is not always the one the client wrote to; one socket per address always
// answers from the right one. (Addresses added after start are not listened on.)
func (h hostAddrs) expand(ip netip.Addr, port uint16) ([]relay.ListenerConfig, error) {
	if !ip.IsUnspecified() {
		return []relay.ListenerConfig{{Network: relay.UDP, Addr: netip.AddrPortFrom(ip, port)}}, nil
	}
	if h.err != nil {
		return nil, h.err
	}
	var out []relay.ListenerConfig
	for _, u := range h.addrs {
		if u.Is4() != ip.Is4() || u.IsLinkLocalUnicast() || u.Zone() != "" {
			continue
		}
		out = append(out, relay.ListenerConfig{Network: relay.UDP, Addr: netip.AddrPortFrom(u, port)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no interface address of that family to listen on")
	}
	return out, nil
}
