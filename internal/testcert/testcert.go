// Package testcert makes throwaway self-signed TLS certificates for tests: one ECDSA P-256
// key and certificate per call, in the forms the tests need (parsed, tls.Certificate, PEM
// files, a pool that trusts it).
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Options says what the certificate names. The zero value is a server certificate for
// 127.0.0.1 named "avedge.test", valid from an hour ago to an hour from now.
type Options struct {
	CommonName string   // Empty: "avedge.test".
	IPs        []net.IP // Neither IPs nor DNS: 127.0.0.1.
	DNS        []string
	NotBefore  time.Time // Zero: an hour ago.
	NotAfter   time.Time // Zero: an hour from now.
	// CA marks the certificate as a CA (basic constraints), for clients that insist on one
	// in their pool.
	CA bool
}

// Pair is a certificate and its key.
type Pair struct {
	Cert    *x509.Certificate
	TLS     tls.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// New makes a self-signed pair; t fails on any error.
func New(t testing.TB, o Options) Pair {
	t.Helper()
	if o.CommonName == "" {
		o.CommonName = "avedge.test"
	}
	if o.IPs == nil && o.DNS == nil {
		o.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		IPAddresses:           o.IPs,
		DNSNames:              o.DNS,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: o.CA,
		IsCA:                  o.CA,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Pair{
		Cert:    cert,
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  pemBlock("EC PRIVATE KEY", kder),
	}
}

// Write writes the pair as PEM files dir/name.crt and dir/name.key, mode 0600, and returns
// their paths.
func (p Pair) Write(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for _, f := range []struct {
		path string
		b    []byte
	}{{certFile, p.CertPEM}, {keyFile, p.KeyPEM}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// Pool returns a pool that trusts the certificate.
func (p Pair) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Cert)
	return pool
}

func pemBlock(typ string, b []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})
}
