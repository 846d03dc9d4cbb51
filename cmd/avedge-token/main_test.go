package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
)

var t0 = time.Unix(1_700_000_000-8*3600, 0)

func now() time.Time { return t0 }

func TestRun(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.WriteFile(secrets, []byte("# newest first\nk2 north\nk1 south\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    []string // substrings of stdout
		wantErr string   // substring of the error (names the flag)
	}{
		{
			name: "REST matches openssl vector",
			args: []string{"--secret", "north", "--user", "alice"},
			// rest_vectors.txt: north 1700000000:alice Cd/49soE35ICqcJF/bCTn8Z4OyE=
			want: []string{"username: 1700000000:alice\n", "password: Cd/49soE35ICqcJF/bCTn8Z4OyE=\n"},
		},
		{name: "secret file newest", args: []string{"--secret-file", secrets, "--user", "alice"}, want: []string{"Cd/49soE35ICqcJF/bCTn8Z4OyE="}},
		{name: "secret file by key id", args: []string{"--secret-file", secrets, "--key-id", "k1", "--user", "alice"}, want: []string{auth.RESTPassword([]byte("south"), "1700000000:alice")}},
		{name: "mras", args: []string{"--secret-file", secrets, "--mras", "--user", "sip:a@b"}, want: []string{"username: mras1:k2:1700000000:c2lwOmFAYg\n"}},
		{name: "realm key", args: []string{"--secret", "north", "--user", "alice", "--realm", "avedge"}, want: []string{"key:      "}},
		{name: "separator", args: []string{"--secret", "north", "--user", "alice", "--separator", "-"}, want: []string{"username: 1700000000-alice\n"}},
		{name: "no secret", args: []string{"--user", "a"}, wantErr: "--secret or --secret-file"},
		{name: "both secrets", args: []string{"--secret", "a", "--secret-file", secrets}, wantErr: "--secret and --secret-file"},
		{name: "bad ttl", args: []string{"--secret", "a", "--ttl", "-1h"}, wantErr: "--ttl"},
		{name: "missing file", args: []string{"--secret-file", filepath.Join(dir, "nope")}, wantErr: "--secret-file"},
		{name: "unknown key id", args: []string{"--secret-file", secrets, "--key-id", "k9"}, wantErr: "--key-id"},
		{name: "bad key id", args: []string{"--secret", "a", "--key-id", "bad id"}, wantErr: "--key-id"},
		{name: "bad identity", args: []string{"--secret", "a", "--mras", "--user", "a\x01"}, wantErr: "--user"},
		{name: "extra argument", args: []string{"--secret", "a", "extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(tt.args, &out, &errOut, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output %q lacks %q", out.String(), w)
				}
			}
		})
	}
}

func TestRunJSONValidates(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"--secret", "north", "--key-id", "prod", "--mras", "--user", "bob", "--ttl", "1h", "--json", "--realm", "r"}, &out, &errOut, now); err != nil {
		t.Fatal(err)
	}
	var got output
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	v := auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "prod", Value: []byte("north")}), Now: now})
	c, err := v.Lookup(got.Username)
	if err != nil || c.Passwords[0] != got.Password || c.UserID != "bob" || got.TTL != 3600 || got.KeyID != "prod" || len(got.Key) != 32 {
		t.Fatalf("minted %+v, validator says %+v, %v", got, c, err)
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"--help"}, &out, &out, now)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"-secret-file", "-ttl", "-mras", "-realm", "-json", "(default 8h0m0s)", "-allow-readable-secrets"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("help lacks %q:\n%s", f, out.String())
		}
	}
}

// TestSecretWhereOthersCanRead checks --secret (used, with a warning on stderr naming
// --secret-file, stdout untouched) and a --secret-file of mode 0644 (refused with a message
// naming the flag, the file, its mode and both fixes; used, with a warning, under
// --allow-readable-secrets); a 0600 file draws no warning.
func TestSecretWhereOthersCanRead(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run([]string{"--secret", "north", "--user", "alice", "--json"}, &out, &errOut, now); err != nil {
		t.Fatal(err)
	}
	want := "avedge-token: warning: --secret is given on the command line, which every user of this host can read (ps, /proc/PID/cmdline): put it in a file named by --secret-file instead\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
	if err := json.Unmarshal(out.Bytes(), new(output)); err != nil {
		t.Errorf("stdout is not the JSON alone: %v: %s", err, out.Bytes())
	}

	secrets := filepath.Join(t.TempDir(), "secrets")
	if err := os.WriteFile(secrets, []byte("k2 north\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if err := run([]string{"--secret-file", secrets, "--user", "alice"}, &out, &errOut, now); err != nil || errOut.Len() != 0 {
		t.Fatalf("0600: err %v, stderr %q", err, errOut.String())
	}
	if err := os.Chmod(secrets, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run([]string{"--secret-file", secrets, "--user", "alice"}, &out, &errOut, now)
	for _, want := range []string{"--secret-file: " + secrets + " holds secrets and is mode 0644", "every user of this host can read it",
		"chmod 600 " + secrets, "--allow-readable-secrets"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("0644: err = %v, want it to say %q", err, want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("0644: printed %q", out.String())
	}
	if err := run([]string{"--secret-file", secrets, "--user", "alice", "--allow-readable-secrets"}, &out, &errOut, now); err != nil {
		t.Fatalf("0644 with --allow-readable-secrets: %v", err)
	}
	if !strings.Contains(out.String(), "Cd/49soE35ICqcJF/bCTn8Z4OyE=") {
		t.Errorf("0644 with --allow-readable-secrets: printed %q", out.String())
	}
	if want := "avedge-token: warning: --secret-file: " + secrets + " holds secrets and is mode 0644"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q lacks %q", errOut.String(), want)
	}
}
