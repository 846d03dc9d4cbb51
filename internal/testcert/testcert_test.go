package testcert

import (
	"crypto/tls"
	"testing"
)

// A pair serves TLS that a client trusting Pool accepts for 127.0.0.1, and its PEM files
// load back into the same certificate.
func TestPairServesTLS(t *testing.T) {
	p := New(t, Options{})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: p.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("a client trusting the pool: %v", err)
	}
	c.Close()
	certFile, keyFile := p.Write(t, t.TempDir(), "x")
	loaded, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Leaf.Equal(p.Cert) {
		t.Fatal("the written pair is another certificate")
	}
	if q := New(t, Options{DNS: []string{"relay.test"}}); q.Cert.VerifyHostname("relay.test") != nil || len(q.Cert.IPAddresses) != 0 {
		t.Fatalf("DNS-only certificate names %v %v", q.Cert.DNSNames, q.Cert.IPAddresses)
	}
}
