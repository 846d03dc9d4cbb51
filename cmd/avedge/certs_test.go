package main

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/internal/testcert"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay"
)

// secretVolume is a directory laid out as Kubernetes mounts a Secret: tls.crt and tls.key
// are links to ..data/tls.crt and ..data/tls.key, and ..data a link to a timestamped
// directory, replaced by a rename when the Secret changes.
type secretVolume struct {
	dir string
	n   int
}

func newSecretVolume(t *testing.T) *secretVolume {
	t.Helper()
	v := &secretVolume{dir: t.TempDir()}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(v.dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func (v *secretVolume) crt() string { return filepath.Join(v.dir, "tls.crt") }
func (v *secretVolume) key() string { return filepath.Join(v.dir, "tls.key") }

// publish writes certPEM and keyPEM into a new directory and swaps ..data to it.
func (v *secretVolume) publish(t *testing.T, certPEM, keyPEM []byte) {
	t.Helper()
	v.n++
	name := "..2026_12_03_16_00_00." + string(rune('0'+v.n))
	if err := os.Mkdir(filepath.Join(v.dir, name), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(v.dir, name, "tls.crt"), string(certPEM), 0o600)
	writeFile(t, filepath.Join(v.dir, name, "tls.key"), string(keyPEM), 0o600)
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(name, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// tlsTURN is a TURN client over TLS to server, and the certificate the server presented.
type tlsTURN struct {
	client *turn.Client
	conn   *tls.Conn
	leaf   *x509.Certificate
}

func dialTLSTURN(t *testing.T, server string, roots *x509.CertPool, c credential) *tlsTURN {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(&d, "tcp", server, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("dial %s: %v", server, err)
	}
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server,
		Conn: turn.NewSTUNConn(conn), Username: c.user, Password: c.pass, Realm: "avedge"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	return &tlsTURN{client: cl, conn: conn, leaf: conn.ConnectionState().PeerCertificates[0]}
}

// TestTURNTLSReload swaps the TURN TLS pair (cert, pkey) as Kubernetes swaps a Secret: after
// a poll (pollTLS, what the tls-reload-interval ticker calls) a new TLS connection is served
// the new certificate, while a connection opened before keeps its session and its allocation
// still relays. A bad pair (a key that does not match, an expired certificate) is refused with
// a log line naming the files, and the current pair kept; SIGHUP (reload) loads a good pair
// as the poll does.
func TestTURNTLSReload(t *testing.T) {
	now := time.Now()
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	pair := func(cn string, notAfter time.Time) testcert.Pair {
		return testcert.New(t, testcert.Options{CommonName: cn, IPs: loop, NotAfter: notAfter, CA: true})
	}
	a, b, c := pair("pair-a", time.Time{}), pair("pair-b", time.Time{}), pair("pair-c", time.Time{})
	expired := testcert.New(t, testcert.Options{CommonName: "expired", IPs: loop, NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})
	roots := x509.NewCertPool()
	for _, p := range []testcert.Pair{a, b, c, expired} {
		roots.AddCert(p.Cert)
	}
	vol := newSecretVolume(t)
	vol.publish(t, a.CertPEM, a.KeyPEM)

	const secret = "secret-tls-0123456789"
	r := newReloadRigWith(t, "k1 "+secret+"\n", "", "cert: "+vol.crt()+"\npkey: "+vol.key()+"\nlisten:\n  - tls/127.0.0.1:0\n")
	var server string
	for _, l := range r.srv.Addrs() {
		if l.Network == relay.TLS {
			server = l.Addr.String()
		}
	}
	if server == "" {
		t.Fatalf("no TLS listener in %v", r.srv.Addrs())
	}
	peer := testnet.Echo(t, "udp4", "127.0.0.1:0")
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Options{})
	if err != nil {
		t.Fatal(err)
	}
	observeTLS(r.st, m)
	// metric returns the value of the TLS metric name for the TURN pair.
	metric := func(t *testing.T, name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, x := range mf.GetMetric() {
				if mf.GetName() == name && len(x.GetLabel()) == 1 && x.GetLabel()[0].GetValue() == metrics.TLSPairTURN {
					return x.GetGauge().GetValue() + x.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no %s{pair=turn}", name)
		return 0
	}
	expiry := func(t *testing.T, want testcert.Pair) {
		t.Helper()
		if got := metric(t, "avedge_tls_certificate_expiry_timestamp_seconds"); got != float64(want.Cert.NotAfter.Unix()) {
			t.Errorf("expiry metric %v, want %s's %d", got, want.Cert.Subject.CommonName, want.Cert.NotAfter.Unix())
		}
	}
	expiry(t, a)
	cred := rest("secret", secret)
	log := newLogger(&r.log, "text", "info")
	poll := func(t *testing.T) string {
		t.Helper()
		before := len(r.log.String())
		pollTLS(log, r.st, false)
		return r.log.String()[before:]
	}
	served := func(t *testing.T, want string) {
		t.Helper()
		if cn := dialTLSTURN(t, server, roots, cred).leaf.Subject.CommonName; cn != want {
			t.Fatalf("a new connection was served %q, want %q", cn, want)
		}
	}

	old := dialTLSTURN(t, server, roots, cred)
	if cn := old.leaf.Subject.CommonName; cn != "pair-a" {
		t.Fatalf("served %q, want pair-a", cn)
	}
	relayed, err := old.client.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	t.Cleanup(func() { relayed.Close() })
	echo(t, relayed, peer, "before the swap")

	if logged := poll(t); logged != "" {
		t.Fatalf("a poll with the files unchanged logged %q", logged)
	}

	vol.publish(t, b.CertPEM, b.KeyPEM)
	if logged := poll(t); !strings.Contains(logged, `msg="TLS files changed: TLS certificate reloaded" pair=turn subject="CN=pair-b"`) {
		t.Fatalf("poll after the swap logged %q", logged)
	}
	served(t, "pair-b")
	expiry(t, b)
	fresh := dialTLSTURN(t, server, roots, cred)
	if _, err := fresh.client.Allocate(); err != nil {
		t.Fatalf("allocate on a connection served the new pair: %v", err)
	}
	echo(t, relayed, peer, "after the swap, on the connection opened before")
	if cn := old.conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "pair-a" {
		t.Errorf("the connection opened before now reports %q", cn)
	}

	for _, bad := range []struct {
		name, why string
		cert, key []byte
	}{
		{"key not matching", "private key does not match public key", c.CertPEM, a.KeyPEM},
		{"expired", "expired at", expired.CertPEM, expired.KeyPEM},
		{"not PEM", "failed to find any PEM data", []byte("not a certificate\n"), c.KeyPEM},
	} {
		t.Run(bad.name, func(t *testing.T) {
			vol.publish(t, bad.cert, bad.key)
			logged := poll(t)
			for _, want := range []string{"level=ERROR", `msg="TLS files changed: TLS certificate not reloaded; keeping the current pair" pair=turn`,
				bad.why, "cert=" + vol.crt(), "pkey=" + vol.key(), "subject=\"CN=pair-b\""} {
				if !strings.Contains(logged, want) {
					t.Errorf("poll logged %q: want %q", logged, want)
				}
			}
			if logged := poll(t); logged != "" {
				t.Errorf("a second poll of the same bad pair logged %q", logged)
			}
			served(t, "pair-b")
		})
	}

	if n := metric(t, "avedge_tls_certificate_reload_failures_total"); n != 3 {
		t.Errorf("reload failures counted %v, want 3", n)
	}
	expiry(t, b)

	t.Run("SIGHUP", func(t *testing.T) {
		vol.publish(t, c.CertPEM, c.KeyPEM)
		logged := r.reload(t)
		if !strings.Contains(logged, `msg="SIGHUP: TLS certificate reloaded" pair=turn subject="CN=pair-c"`) || !strings.Contains(logged, "SIGHUP: reloaded secrets") {
			t.Fatalf("SIGHUP logged %q", logged)
		}
		served(t, "pair-c")
		expiry(t, c)
		if logged := poll(t); logged != "" {
			t.Errorf("a poll after SIGHUP loaded the pair logged %q", logged)
		}
		echo(t, relayed, peer, "after SIGHUP, on the connection opened first")
	})
}

// TestTLSWatcher runs the daemon with a short tls-reload-interval: a Secret swap is picked up
// by the poll alone, with no signal, and a new connection is served the new pair. (The test
// waits for the daemon's log line, an event, not for a duration.)
func TestTLSWatcher(t *testing.T) {
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	a := testcert.New(t, testcert.Options{CommonName: "watch-a", IPs: loop, CA: true})
	b := testcert.New(t, testcert.Options{CommonName: "watch-b", IPs: loop, CA: true})
	roots := x509.NewCertPool()
	roots.AddCert(a.Cert)
	roots.AddCert(b.Cert)
	vol := newSecretVolume(t)
	vol.publish(t, a.CertPEM, a.KeyPEM)
	s := start(t, "--cert", vol.crt(), "--pkey", vol.key(), "--listen", "tls/127.0.0.1:0", "--tls-reload-interval", "20ms")
	m := regexp.MustCompile(`msg=listening transport=tls addr=(\S+)`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no TLS listener logged:\n%s", s.stderr.String())
	}
	leaf := func() string {
		c, err := tls.Dial("tcp", m[1], &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := leaf(); cn != "watch-a" {
		t.Fatalf("served %q, want watch-a", cn)
	}
	from := len(s.stderr.String())
	vol.publish(t, b.CertPEM, b.KeyPEM)
	if logged, ok := s.stderr.waitFor(from, `msg="TLS files changed: TLS certificate reloaded" pair=turn subject="CN=watch-b"`, 10*time.Second); !ok {
		t.Fatalf("the poll did not load the new pair; logged:\n%s", logged)
	}
	if cn := leaf(); cn != "watch-b" {
		t.Fatalf("after the poll, served %q, want watch-b", cn)
	}
	s.stop(t)
}
