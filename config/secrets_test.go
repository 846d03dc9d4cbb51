package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/avedge/avedge/internal/testcert"
)

// writeMode writes a file and sets its mode whatever the umask.
func writeMode(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// writeKeyPair writes a self-signed certificate and its key (mode 0600) into dir.
func writeKeyPair(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	p := testcert.New(t, testcert.Options{DNS: []string{"avedge.test"}})
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeMode(t, cert, string(p.CertPEM), 0o644)
	writeMode(t, key, string(p.KeyPEM), 0o600)
	return cert, key
}

// TestSecretsFileMode checks each file of secrets: mode 0644 is refused with a message that
// names the option, the file, its mode and both ways out; allow-readable-secrets reads it with
// a warning; 0600 is read without one.
func TestSecretsFileMode(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir)
	for _, tc := range []struct {
		key, content string
		args         func(path string) []string
	}{
		{"static-auth-secret-file", "k1 0123456789abcdef0123456789abcdef\n",
			func(p string) []string { return []string{"--static-auth-secret-file", p} }},
		{"users-file", "alice:alice-pw\n",
			func(p string) []string { return []string{"--users-file", p} }},
		{"auth-api-key-file", "0123456789abcdef0123\n",
			func(p string) []string { return []string{"--auth-api-key-file", p} }},
		{"pkey", "",
			func(p string) []string { return []string{"--cert", cert, "--pkey", p} }},
		{"auth-tls-key", "",
			func(p string) []string { return []string{"--auth-tls-cert", cert, "--auth-tls-key", p} }},
	} {
		t.Run(tc.key, func(t *testing.T) {
			path := key
			if tc.content != "" {
				path = filepath.Join(dir, tc.key)
				writeMode(t, path, tc.content, 0o600)
			}
			build := func(extra ...string) (*Settings, error) {
				o, err := Parse(append(tc.args(path), extra...), io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				return o.Build()
			}

			st, err := build()
			if err != nil {
				t.Fatalf("0600: %v", err)
			}
			if len(st.Warnings) != 0 {
				t.Errorf("0600: warnings %q", st.Warnings)
			}

			if err := os.Chmod(path, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(path, 0o600) })
			_, err = build()
			if err == nil {
				t.Fatal("0644 accepted")
			}
			for _, want := range []string{"config: " + tc.key + ": " + path + " holds secrets and is mode 0644",
				"every user of this host can read it", "chmod 600 " + path, "--allow-readable-secrets"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("0644: error %q does not say %q", err, want)
				}
			}

			st, err = build("--allow-readable-secrets")
			if err != nil {
				t.Fatalf("0644 with --allow-readable-secrets: %v", err)
			}
			if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], tc.key+": "+path+" holds secrets and is mode 0644") ||
				!strings.Contains(st.Warnings[0], "allow-readable-secrets") {
				t.Errorf("0644 with --allow-readable-secrets: warnings %q, want one naming %s, the file and its mode", st.Warnings, tc.key)
			}
		})
	}
}

// TestSecretsOnTheCommandLineWarned checks that each option carrying a secret, given as a
// flag, draws a warning that names it and the file option to use instead; the same options
// from a config file only its owner reads, and the embedded default, draw none.
func TestSecretsOnTheCommandLineWarned(t *testing.T) {
	o, err := Parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err := o.Build()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Warnings) != 0 {
		t.Fatalf("embedded default: warnings %q", st.Warnings)
	}

	o, err = Parse([]string{"--static-auth-secret", "0123456789abcdef0123456789abcdef", "--user", "alice:alice-pw",
		"--auth-api-key", "0123456789abcdef0123", "--realm", "r"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	st, err = o.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"static-auth-secret": "static-auth-secret-file", "user": "users-file", "auth-api-key": "auth-api-key-file"}
	for opt, file := range want {
		found := false
		for _, w := range st.Warnings {
			found = found || strings.HasPrefix(w, "--"+opt+" is given on the command line") && strings.Contains(w, "put it in a file named by --"+file+" instead")
		}
		if !found {
			t.Errorf("no warning for --%s naming %s: %q", opt, file, st.Warnings)
		}
	}
	if len(st.Warnings) != len(want) {
		t.Errorf("warnings %q, want %d", st.Warnings, len(want))
	}

	cfg := filepath.Join(t.TempDir(), "avedge.yaml")
	writeMode(t, cfg, "static-auth-secret: [0123456789abcdef0123456789abcdef]\nuser: [alice:pw]\nauth-api-key: [0123456789abcdef0123]\n", 0o600)
	o, err = Parse([]string{"--config", cfg, "--realm", "r"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = o.Build(); err != nil {
		t.Fatal(err)
	}
	if len(st.Warnings) != 0 {
		t.Errorf("secrets in a 0600 config file: warnings %q", st.Warnings)
	}
}

// TestInlineSecretInReadableConfigWarned checks that a config file others can read draws a
// warning for each secret written in it (naming the file, its mode, the key and the fixes),
// and none when it holds no secret.
func TestInlineSecretInReadableConfigWarned(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	writeMode(t, secrets, "k1 0123456789abcdef0123456789abcdef\n", 0o600)
	for _, tc := range []struct {
		name, yaml string
		mode       os.FileMode
		want       []string // the keys warned about
	}{
		{"shared secret inline, 0644", "static-auth-secret: [0123456789abcdef0123456789abcdef]\n", 0o644, []string{"static-auth-secret"}},
		{"user and API key inline, 0604", "user: [alice:pw]\nauth-api-key: [0123456789abcdef0123]\n", 0o604, []string{"user", "auth-api-key"}},
		{"secret in a merged mapping, 0644", "<<: {static-auth-secret: [0123456789abcdef0123456789abcdef]}\n", 0o644, []string{"static-auth-secret"}},
		{"shared secret inline, 0600", "static-auth-secret: [0123456789abcdef0123456789abcdef]\n", 0o600, nil},
		{"secrets file named, 0644", "static-auth-secret-file: " + secrets + "\n", 0o644, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			writeMode(t, cfg, tc.yaml, tc.mode)
			o, err := Parse([]string{"--config", cfg}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st, err := o.Build()
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Warnings) != len(tc.want) {
				t.Fatalf("warnings %q, want %d about %v", st.Warnings, len(tc.want), tc.want)
			}
			for i, key := range tc.want {
				w := st.Warnings[i]
				for _, s := range []string{cfg + " holds " + key + " inline", fmt.Sprintf("is mode %04o", tc.mode),
					"every user of this host can read it", "chmod 600 " + cfg, "or put it in " + key} {
					if !strings.Contains(w, s) {
						t.Errorf("warning %q does not say %q", w, s)
					}
				}
			}
		})
	}
}

// TestNonLoopback checks that Settings names the first listener not on loopback (TURN, then
// the credential service, then metrics), and nothing when every one is on loopback.
func TestNonLoopback(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "api-keys")
	writeMode(t, keys, "0123456789abcdef0123\n", 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"embedded default", nil, ""},
		{"loopback elsewhere in 127/8 and ::1", []string{"--listening-ip", "127.0.0.2", "--listening-ip", "::1", "--relay-ip", "127.0.0.2", "--relay-ip", "::1", "--metrics-listen", "[::1]:9641"}, ""},
		{"TURN on an address of the network", []string{"--listening-ip", "192.0.2.1"}, "udp/192.0.2.1:3478"},
		{"TCP on the wildcard", []string{"--no-udp", "--listening-ip", "0.0.0.0", "--relay-ip", "127.0.0.1"}, "tcp/0.0.0.0:3478"},
		{"credential service on the wildcard", []string{"--auth-listen", "0.0.0.0:8443", "--auth-api-key-file", keys}, "auth-listen 0.0.0.0:8443"},
		{"metrics on the wildcard", []string{"--metrics-listen", "[::]:9641"}, "metrics-listen [::]:9641"},
		{"metrics off", []string{"--metrics-listen", "", "--auth-listen", ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Parse(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st, err := o.Build()
			if err != nil {
				t.Fatal(err)
			}
			if st.NonLoopback != tc.want {
				t.Errorf("NonLoopback %q, want %q", st.NonLoopback, tc.want)
			}
		})
	}
}

// TestBadUserEntryNotEchoed checks that a user entry without its colon, which may be all
// password, is not repeated in the error (which goes to logs).
func TestBadUserEntryNotEchoed(t *testing.T) {
	o, err := Parse([]string{"--user", "alice:pw", "--user", "s3cr3t-password"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.Build()
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "config: user: entry 2: want name:password") {
		t.Fatalf("error %v: want entry 2 named, not its text", err)
	}
}
