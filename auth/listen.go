package auth

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Certificate is a TLS certificate and key read from two PEM files (the credential service's,
// the TURN TLS listeners'), replaced by Reload (on SIGHUP, say) or ReloadIfChanged (a poll)
// without a restart: connections already up keep the pair they were opened with, the next
// handshake gets the new one. A pair that does not load is refused and the current one stays.
type Certificate struct {
	certFile, keyFile string // Static after construction.
	now               func() time.Time
	cur               atomic.Pointer[tls.Certificate] // Replaced whole by Reload.

	mu      sync.Mutex                            // serialises Reload and ReloadIfChanged
	seen    [2]fileSum                            // the files' contents at the last attempt to load them. Guarded by mu.
	observe func(cur *tls.Certificate, err error) // nil: none. Guarded by mu.
}

// fileSum identifies a file's content: its SHA-256, or the zero value when it did not read.
// Certificate files are a few kilobytes, so a poll reads them whole rather than trusting
// modification times (a file rewritten in place within the same clock tick, at the same size,
// looks unchanged to stat). The path is opened afresh each time, symbolic links followed: a
// Kubernetes Secret volume, which swaps its "..data" link to a new directory, reads as new
// content.
type fileSum [sha256.Size]byte

// maxPEMFile bounds what is read of a certificate or key file.
const maxPEMFile = 1 << 20

func readPEMFile(path string) ([]byte, fileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileSum{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, fileSum{}, err
	}
	if len(b) > maxPEMFile {
		return nil, fileSum{}, fmt.Errorf("%s: longer than %d bytes", path, maxPEMFile)
	}
	return b, sha256.Sum256(b), nil
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

// Files returns the certificate and key file names the pair is read from.
func (c *Certificate) Files() (certFile, keyFile string) { return c.certFile, c.keyFile }

// Reload reads the files again. On success the new pair serves every later handshake; on
// error (unreadable, mismatched or expired pair) the current pair stays and the error says why.
func (c *Certificate) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked()
}

// ReloadIfChanged reloads the pair when either file's content differs from what the last
// attempt read, successful or not: a poll retries a refused pair only once its files change
// again, and a pair caught half-written (the certificate renewed, not yet the key) loads when
// the second file lands. changed says whether it tried.
func (c *Certificate) ReloadIfChanged() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certPEM, certSum, certErr := readPEMFile(c.certFile)
	keyPEM, keySum, keyErr := readPEMFile(c.keyFile)
	if c.seen == [2]fileSum{certSum, keySum} {
		return false, nil
	}
	c.seen = [2]fileSum{certSum, keySum}
	return true, c.load(certPEM, keyPEM, errors.Join(certErr, keyErr))
}

func (c *Certificate) reloadLocked() error {
	certPEM, certSum, certErr := readPEMFile(c.certFile)
	keyPEM, keySum, keyErr := readPEMFile(c.keyFile)
	c.seen = [2]fileSum{certSum, keySum}
	return c.load(certPEM, keyPEM, errors.Join(certErr, keyErr))
}

// Observe has f called after every attempt to load the pair (Reload, ReloadIfChanged that
// found a change) with the pair served after it and the attempt's error, and once now with
// the current pair; for metrics. f must not call c's methods but Current.
func (c *Certificate) Observe(f func(cur *tls.Certificate, err error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observe = f
	f(c.cur.Load(), nil)
}

// load makes the pair of certPEM and keyPEM current, unless readErr (the files did not read)
// or the pair does not load; it tells the observer.
func (c *Certificate) load(certPEM, keyPEM []byte, readErr error) error {
	err := c.parse(certPEM, keyPEM, readErr)
	if c.observe != nil {
		c.observe(c.cur.Load(), err)
	}
	return err
}

func (c *Certificate) parse(certPEM, keyPEM []byte, readErr error) error {
	if readErr != nil {
		return fmt.Errorf("auth: tls pair %s, %s: %w", c.certFile, c.keyFile, readErr)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
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
