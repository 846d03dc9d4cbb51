package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthTLS checks the credential service's TLS pair: read at Build from auth-tls-cert and
// auth-tls-key (and its names kept for SIGHUP), not read while auth-listen is empty, and a pair
// that does not load refused with the error named against auth-tls-cert.
func TestAuthTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir)
	_, otherKey := writeKeyPair(t, t.TempDir())
	build := func(args ...string) (*Settings, error) {
		t.Helper()
		o, err := Parse(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return o.Build()
	}

	st, err := build("--auth-tls-cert", cert, "--auth-tls-key", key)
	if err != nil {
		t.Fatal(err)
	}
	if st.AuthTLS == nil || st.AuthTLS.Current().Leaf.Subject.CommonName != "avedge.test" {
		t.Fatalf("AuthTLS %v: want the pair of %s", st.AuthTLS, cert)
	}
	if st.AuthTLSCert != cert || st.AuthTLSKey != key {
		t.Errorf("AuthTLSCert %q, AuthTLSKey %q: want %q, %q", st.AuthTLSCert, st.AuthTLSKey, cert, key)
	}
	if cfg := st.AuthTLS.TLSConfig(); cfg.GetCertificate == nil {
		t.Error("TLSConfig serves no certificate")
	}

	if st, err = build(); err != nil || st.AuthTLS != nil || st.AuthTLSCert != "" {
		t.Fatalf("no TLS options: AuthTLS %v, AuthTLSCert %q, err %v; want plain HTTP", st.AuthTLS, st.AuthTLSCert, err)
	}

	// The service off: its files are not read.
	none := filepath.Join(dir, "none")
	if st, err = build("--auth-listen", "", "--auth-tls-cert", none, "--auth-tls-key", none); err != nil || st.AuthTLS != nil {
		t.Fatalf("auth-listen empty: AuthTLS %v, err %v; want the files not read", st.AuthTLS, err)
	}

	for _, tc := range []struct {
		name, cert, key, want string
	}{
		{"key of another pair", cert, otherKey, "private key does not match public key"},
		{"certificate file not PEM", key, key, "auth: tls pair"},
		{"missing certificate", none, key, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build("--auth-tls-cert", tc.cert, "--auth-tls-key", tc.key)
			if err == nil || !strings.HasPrefix(err.Error(), "config: auth-tls-cert: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v: want it named against auth-tls-cert, saying %q", err, tc.want)
			}
		})
	}
	t.Run("missing key", func(t *testing.T) {
		_, err := build("--auth-tls-cert", cert, "--auth-tls-key", none)
		if err == nil || !strings.HasPrefix(err.Error(), "config: auth-tls-key: ") {
			t.Fatalf("err %v: want it named against auth-tls-key", err)
		}
	})
}

// TestAuthAnonymous checks where the credential service may serve without an API key: on a
// loopback address with auth-allow-anonymous; elsewhere only with auth-insecure-anonymous
// (which implies anonymous and draws a warning), and the refusal names that option.
func TestAuthAnonymous(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(keys, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		refused bool
		warned  bool
	}{
		{"allowed on 127.0.0.1", []string{"--auth-listen", "127.0.0.1:8443", "--auth-allow-anonymous"}, false, false},
		{"allowed on ::1", []string{"--auth-listen", "[::1]:8443", "--auth-allow-anonymous"}, false, false},
		{"refused on 0.0.0.0", []string{"--auth-listen", "0.0.0.0:8443", "--auth-allow-anonymous"}, true, false},
		{"refused on ::", []string{"--auth-listen", "[::]:8443", "--auth-allow-anonymous"}, true, false},
		{"refused on an address of the network", []string{"--auth-listen", "192.0.2.1:8443", "--auth-allow-anonymous"}, true, false},
		{"refused off loopback with an API key too", []string{"--auth-listen", "0.0.0.0:8443", "--auth-allow-anonymous", "--auth-api-key-file", keys}, true, false},
		{"forced on 0.0.0.0", []string{"--auth-listen", "0.0.0.0:8443", "--auth-allow-anonymous", "--auth-insecure-anonymous"}, false, true},
		{"forced alone implies anonymous", []string{"--auth-listen", "[::]:8443", "--auth-insecure-anonymous"}, false, true},
		{"forced on loopback: no warning", []string{"--auth-listen", "127.0.0.1:8443", "--auth-insecure-anonymous"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Parse(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st, err := o.Build()
			if tc.refused {
				if err == nil || !strings.Contains(err.Error(), "config: auth-allow-anonymous: ") || !strings.Contains(err.Error(), "not a loopback address") ||
					!strings.Contains(err.Error(), "auth-insecure-anonymous") {
					t.Fatalf("err %v: want a refusal that names auth-insecure-anonymous", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !st.Service.AllowAnonymous || st.GeneratedAPIKey != "" {
				t.Errorf("AllowAnonymous %v, generated API key %q: want anonymous and no key", st.Service.AllowAnonymous, st.GeneratedAPIKey)
			}
			warned := false
			for _, w := range st.Warnings {
				warned = warned || strings.HasPrefix(w, "auth-insecure-anonymous: ") && strings.Contains(w, "anyone who reaches it")
			}
			if warned != tc.warned {
				t.Errorf("warnings %q: want a warning about auth-insecure-anonymous %v", st.Warnings, tc.warned)
			}
		})
	}
}
