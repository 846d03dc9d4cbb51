package auth

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// Certificate is the credential service's TLS certificate and key, read from two PEM files
// and replaced by Reload (on SIGHUP, say) without a restart: connections already up keep the
// pair they were opened with, the next handshake gets the new one. A pair that does not load
// is refused and the current one stays.
type Certificate struct {
	certFile, keyFile string // Static after construction.
	now               func() time.Time
	cur               atomic.Pointer[tls.Certificate] // Replaced whole by Reload.
}

// LoadCertificate reads the pair from certFile and keyFile (PEM; the certificate file may
// carry the chain after the leaf). It fails when the files do not parse, the key does not
// match the certificate, or the certificate has expired.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, now: time.Now}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again. On success the new pair serves every later handshake; on
// error (unreadable, mismatched or expired pair) the current pair stays and the error says why.
func (c *Certificate) Reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("auth: tls pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	// Go fills Leaf since 1.23; the check below needs it.
	if pair.Leaf == nil {
		return fmt.Errorf("auth: tls certificate %s: no leaf", c.certFile)
	}
	if now := c.now(); now.After(pair.Leaf.NotAfter) {
		return fmt.Errorf("auth: tls certificate %s expired at %s: %w", c.certFile, pair.Leaf.NotAfter.UTC().Format(time.RFC3339), ErrCertExpired)
	}
	c.cur.Store(&pair)
	return nil
}

// Current returns the pair currently served (for logs: its Leaf names subject and expiry).
func (c *Certificate) Current() *tls.Certificate { return c.cur.Load() }

// GetCertificate is tls.Config.GetCertificate: the current pair.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// TLSConfig returns a server configuration serving the current pair, TLS 1.2 at least.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

// CheckAnonymousListen refuses anonymous mode (no API key) on addr unless addr is a loopback
// address: anyone who reaches a non-loopback listener would be handed credentials. The caller
// decides whether a flag that says so ("insecure") overrides the refusal.
func CheckAnonymousListen(addr net.Addr) error {
	var ip net.IP
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("auth: %s: %w", addr, ErrAnonymousNotLoopback)
	}
	return nil
}
