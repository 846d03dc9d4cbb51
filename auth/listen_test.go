package auth

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/avedge/avedge/internal/testcert"
)

// testPair writes a self-signed certificate for 127.0.0.1 named cn, valid from notBefore to
// notAfter, and its key, as PEM files in dir; it returns their paths.
func testPair(t *testing.T, dir, cn string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	return testcert.New(t, testcert.Options{CommonName: cn, NotBefore: notBefore, NotAfter: notAfter}).Write(t, dir, cn)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedCN(t *testing.T, c *Certificate) string {
	t.Helper()
	got, err := c.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return got.Leaf.Subject.CommonName
}

func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	aCrt, aKey := testPair(t, dir, "a", now.Add(-time.Hour), now.Add(time.Hour))
	bCrt, bKey := testPair(t, dir, "b", now.Add(-time.Hour), now.Add(time.Hour))
	oldCrt, oldKey := testPair(t, dir, "old", now.Add(-2*time.Hour), now.Add(-time.Hour))
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyFile(t, aCrt, crt)
	copyFile(t, aKey, key)

	c, err := LoadCertificate(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, c); cn != "a" {
		t.Fatalf("serves %q, want a", cn)
	}

	for _, tc := range []struct {
		name     string
		crt, key string // copied over tls.crt and tls.key
		garbage  bool   // tls.key overwritten with text that is no PEM
		wantErr  error  // nil: any error
	}{
		{name: "mismatched key", crt: bCrt, key: aKey},
		{name: "not PEM", crt: bCrt, key: bKey, garbage: true},
		{name: "expired", crt: oldCrt, key: oldKey, wantErr: ErrCertExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyFile(t, tc.crt, crt)
			copyFile(t, tc.key, key)
			if tc.garbage {
				if err := os.WriteFile(key, []byte("not a key\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := c.Reload()
			if err == nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Reload = %v, want an error (%v)", err, tc.wantErr)
			}
			if cn := servedCN(t, c); cn != "a" {
				t.Errorf("after a refused reload serves %q, want the previous pair a", cn)
			}
			if _, err := LoadCertificate(crt, key); err == nil {
				t.Error("LoadCertificate accepts the pair Reload refused")
			}
		})
	}

	copyFile(t, bCrt, crt)
	copyFile(t, bKey, key)
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, c); cn != "b" {
		t.Fatalf("after reload serves %q, want b", cn)
	}
	if _, err := LoadCertificate(filepath.Join(dir, "missing.crt"), key); err == nil {
		t.Error("LoadCertificate accepts a missing file")
	}
}

func TestCheckAnonymousListen(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		ok   bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 1, 2, 3), Port: 8443}, true},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8443}, true},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8443}, false},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8443}, false},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8443}, false},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 8443}, true},
		{&net.UnixAddr{Name: "/run/x", Net: "unix"}, false},
	} {
		t.Run(tc.addr.String(), func(t *testing.T) {
			err := CheckAnonymousListen(tc.addr)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrAnonymousNotLoopback) {
				t.Errorf("CheckAnonymousListen(%s) = %v, want ok=%v", tc.addr, err, tc.ok)
			}
		})
	}
}

// TestCertificateReloadIfChanged swaps the pair the way a Kubernetes Secret volume does (the
// files are links through "..data", itself a link to a timestamped directory, replaced by a
// rename) and the way a renewal script does (the files rewritten in place, the certificate
// first): ReloadIfChanged loads a new pair once, leaves an unchanged one alone, tries a bad
// pair once and keeps the current one, and loads the pair when the second file lands.
func TestCertificateReloadIfChanged(t *testing.T) {
	vol := t.TempDir()
	now := time.Now()
	pairs := map[string][2]string{}
	for _, cn := range []string{"a", "b", "c"} {
		crt, key := testPair(t, t.TempDir(), cn, now.Add(-time.Hour), now.Add(time.Hour))
		pairs[cn] = [2]string{crt, key}
	}
	// publish writes the pair of cn into a new directory of vol and points ..data at it.
	publish := func(t *testing.T, cn, dirName string) {
		t.Helper()
		dir := filepath.Join(vol, dirName)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		copyFile(t, pairs[cn][0], filepath.Join(dir, "tls.crt"))
		copyFile(t, pairs[cn][1], filepath.Join(dir, "tls.key"))
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(dirName, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, "a", "..2026_12_03_15_00_00.1")
	crt, key := filepath.Join(vol, "tls.crt"), filepath.Join(vol, "tls.key")
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(vol, f)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := LoadCertificate(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, wantChanged, wantErr bool, wantCN string) {
		t.Helper()
		changed, err := c.ReloadIfChanged()
		if changed != wantChanged || (err != nil) != wantErr {
			t.Fatalf("ReloadIfChanged = %v, %v; want changed %v, error %v", changed, err, wantChanged, wantErr)
		}
		if cn := servedCN(t, c); cn != wantCN {
			t.Fatalf("serves %q, want %q", cn, wantCN)
		}
	}

	check(t, false, false, "a")
	publish(t, "b", "..2026_12_03_15_05_00.2")
	check(t, true, false, "b")
	check(t, false, false, "b")

	// Rewritten in place, the certificate first: the half-renewed pair is refused once, and
	// the next poll after the key lands loads it.
	copyFile(t, pairs["c"][0], filepath.Join(vol, "..data", "tls.crt"))
	check(t, true, true, "b")
	check(t, false, false, "b")
	copyFile(t, pairs["c"][1], filepath.Join(vol, "..data", "tls.key"))
	check(t, true, false, "c")

	// A file gone (mid-swap) is refused, and the pair back is loaded again.
	if err := os.Remove(filepath.Join(vol, "..data", "tls.key")); err != nil {
		t.Fatal(err)
	}
	check(t, true, true, "c")
	copyFile(t, pairs["a"][1], filepath.Join(vol, "..data", "tls.key")) // c's certificate, a's key
	check(t, true, true, "c")
	copyFile(t, pairs["c"][1], filepath.Join(vol, "..data", "tls.key"))
	check(t, true, false, "c")
}
