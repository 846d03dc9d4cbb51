//go:build linux

package relay

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
)

// rotationKeys are the secrets of a rotation: the new one first, as a keyring lists them.
var (
	oldKey = auth.Secret{ID: "k1", Value: testSecret}
	newKey = auth.Secret{ID: "k2", Value: []byte("rotated-secret-9876543210")}
)

type credential struct{ name, username, password string }

// rotationCredentials mints, for each key, a TURN REST credential (which names no key: the
// relay must find which live secret signed it) and a keyed MRAS one (which names its key).
func rotationCredentials(key auth.Secret, expiry time.Time) []credential {
	ru, rp := auth.MintREST(key.Value, "alice", expiry)
	mu, mp := auth.MintMRAS(key, "sip:alice@example.com", expiry)
	return []credential{
		{name: "REST " + key.ID, username: ru, password: rp},
		{name: "MRAS " + key.ID, username: mu, password: mp},
	}
}

// allocateWith allocates over client transport tr (UDP, TCP or TLS) with a pion client and, when
// it succeeds, relays one round trip, so that the requests after Allocate (CreatePermission,
// ChannelBind) are authenticated with the same credential too. It returns the Allocate error.
func allocateWith(t *testing.T, s *Server, tr Network, roots *x509.CertPool, cr credential) error {
	t.Helper()
	var c *turn.Client
	switch tr {
	case TCP:
		c = newStreamClient(t, s.addrOf(TCP), nil, cr.username, cr.password)
	case TLS:
		c = newStreamClient(t, s.addrOf(TLS), roots, cr.username, cr.password)
	default:
		c = newClientWith(t, s.addrOf(UDP), "udp4", "127.0.0.1:0", cr.username, cr.password)
	}
	relay, err := c.Allocate()
	if err != nil {
		return err
	}
	t.Cleanup(func() { relay.Close() })
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	echoThrough(t, relay, peer.LocalAddr(), 3, 64)
	return nil
}

// Issue 4, key rotation: while the keyring lists [new, old], credentials minted with either
// secret allocate; once the old secret is withdrawn, its credentials get 401 and the new
// ones still work.
func TestKeyRotation(t *testing.T) {
	expiry := time.Now().Add(time.Hour)
	oldCreds := rotationCredentials(oldKey, expiry)
	newCreds := rotationCredentials(newKey, expiry)
	cert, roots := selfSigned(t)
	for _, tr := range []Network{UDP, TCP, TLS} {
		t.Run(string(tr), func(t *testing.T) {
			ring := auth.NewKeyring(newKey, oldKey)
			s := startServer(t, func(c *Config) {
				c.Validator = auth.NewValidator(auth.ValidatorConfig{Keyring: ring})
				lo := netip.MustParseAddrPort("127.0.0.1:0")
				c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}, {Network: TCP, Addr: lo}, {Network: TLS, Addr: lo}}
				c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			})
			for _, cr := range append(append([]credential(nil), newCreds...), oldCreds...) {
				t.Run("both live/"+cr.name, func(t *testing.T) {
					if err := allocateWith(t, s, tr, roots, cr); err != nil {
						t.Fatalf("allocate with %s while both secrets are live: %v", cr.name, err)
					}
				})
			}
			ring.Set([]auth.Secret{newKey})
			for _, cr := range oldCreds {
				t.Run("old withdrawn/"+cr.name, func(t *testing.T) {
					err := allocateWith(t, s, tr, roots, cr)
					if errorCode(err) != stun.CodeUnauthorized {
						t.Fatalf("allocate with %s after its secret was withdrawn: %v, want 401", cr.name, err)
					}
				})
			}
			for _, cr := range newCreds {
				t.Run("old withdrawn/"+cr.name, func(t *testing.T) {
					if err := allocateWith(t, s, tr, roots, cr); err != nil {
						t.Fatalf("allocate with %s: %v", cr.name, err)
					}
				})
			}
		})
	}
}

// A pool is many identical relays: a credential issued once is accepted by every relay
// that shares the key, with no state shared between them.
func TestCredentialAcceptedAcrossRelays(t *testing.T) {
	expiry := time.Now().Add(time.Hour)
	relays := make([]*Server, 2)
	for i := range relays {
		// Each relay has its own keyring holding the same secret, as two nodes loading the
		// same Kubernetes Secret would.
		ring := auth.NewKeyring(newKey)
		lo := netip.MustParseAddrPort("127.0.0.1:0")
		relays[i] = startServer(t, func(c *Config) {
			c.Validator = auth.NewValidator(auth.ValidatorConfig{Keyring: ring})
			c.Listeners = []ListenerConfig{{Network: UDP, Addr: lo}}
		})
	}
	for _, cr := range rotationCredentials(newKey, expiry) {
		t.Run(cr.name, func(t *testing.T) {
			for i, s := range relays {
				c := dialRaw(t, s.addrOf(UDP), cr.username, cr.password)
				if err := c.allocate(); err != nil {
					t.Fatalf("relay %d: allocate: %v", i, err)
				}
				if err := c.refresh(0); err != nil {
					t.Fatalf("relay %d: refresh 0: %v", i, err)
				}
			}
		})
	}
	// The same keyed username minted with a key the pool does not have is refused by all.
	forged, pw := auth.MintMRAS(auth.Secret{ID: newKey.ID, Value: []byte("not the pool's secret")}, "sip:alice@example.com", expiry)
	for i, s := range relays {
		err := dialRaw(t, s.addrOf(UDP), forged, pw).allocate()
		if errorCode(err) != stun.CodeUnauthorized {
			t.Fatalf("relay %d: forged keyed credential: %v, want 401", i, err)
		}
	}
}
