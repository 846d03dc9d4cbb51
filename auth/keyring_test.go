package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeyring(t *testing.T) {
	a := Secret{ID: "a", Value: []byte("secret-a")}
	b := Secret{ID: "b", Value: []byte("secret-b")}
	k := NewKeyring(b, a)
	if n, ok := k.Newest(); !ok || n.ID != "b" {
		t.Fatalf("Newest = %v, %v; want b", n, ok)
	}
	if s, ok := k.ByID("a"); !ok || string(s.Value) != "secret-a" {
		t.Fatalf("ByID(a) = %v, %v", s, ok)
	}
	if _, ok := k.ByID("c"); ok {
		t.Fatal("ByID(c) found a secret")
	}
	// Set copies: mutating the caller's slice does not change the ring.
	in := []Secret{{ID: "c", Value: []byte("secret-c")}}
	k.Set(in)
	in[0].Value[0] = 'X'
	in[0].ID = "z"
	if s, ok := k.Newest(); !ok || s.ID != "c" || string(s.Value) != "secret-c" {
		t.Fatalf("after Set, Newest = %q %q", s.ID, s.Value)
	}
	k.Set(nil)
	if _, ok := k.Newest(); ok {
		t.Fatal("empty keyring has a newest secret")
	}
	var nilRing *Keyring
	if nilRing.Secrets() != nil {
		t.Fatal("nil keyring has secrets")
	}
}

// TestKeyringConcurrent runs readers against a writer; with -race it shows
// Set and the readers need no further locking.
func TestKeyringConcurrent(t *testing.T) {
	k := NewKeyring(Secret{ID: "a", Value: []byte("1")})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				s := k.Secrets()
				if len(s) == 0 || len(s[0].Value) == 0 {
					t.Error("reader saw an empty keyring")
					return
				}
			}
		})
	}
	for i := range 1000 {
		k.Set([]Secret{{ID: "a", Value: []byte{byte(i) | 1}}, {ID: "b", Value: []byte("2")}})
	}
	wg.Wait()
}

func TestLoadSecretsFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []Secret
		wantErr error
		errLine string // "file:N" expected in the message
	}{
		{
			name:    "ids comments and blanks",
			content: "# newest first\n\nk2 second-secret\n  k1\tfirst-secret  \r\n",
			want:    []Secret{{"k2", []byte("second-secret")}, {"k1", []byte("first-secret")}},
		},
		{
			name:    "bare secret gets hash id",
			content: "north\n",
			want:    []Secret{{DefaultKeyID([]byte("north")), []byte("north")}},
		},
		{name: "empty", content: "# nothing\n", wantErr: ErrNoSecrets},
		{name: "bad id", content: "ok s1\nbad.id s2\n", wantErr: ErrBadKeyID, errLine: ":2:"},
		{name: "too long id", content: "abcdefghijklmnopq s\n", wantErr: ErrBadKeyID, errLine: ":1:"},
		{name: "three fields", content: "a b c\n", wantErr: ErrBadLine, errLine: ":1:"},
		{name: "duplicate id", content: "a s1\n#\na s2\n", wantErr: ErrDuplicateKeyID, errLine: ":3:"},
		{name: "duplicate bare secret", content: "s\ns\n", wantErr: ErrDuplicateKeyID, errLine: ":2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSecretsFile(writeFile(t, tt.content))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errLine) {
					t.Fatalf("err %q does not name %q", err, tt.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateSecrets(got); err != nil {
				t.Fatalf("loaded secrets do not validate: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d secrets, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].ID != tt.want[i].ID || string(got[i].Value) != string(tt.want[i].Value) {
					t.Errorf("secret %d = %q %q, want %q %q", i, got[i].ID, got[i].Value, tt.want[i].ID, tt.want[i].Value)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		if _, err := LoadSecretsFile(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestKeyringLoadFileKeepsOldOnError(t *testing.T) {
	k := NewKeyring(Secret{ID: "old", Value: []byte("v")})
	if err := k.LoadFile(writeFile(t, "bad id!! x\n")); err == nil {
		t.Fatal("LoadFile accepted a bad file")
	}
	if s, _ := k.Newest(); s.ID != "old" {
		t.Fatalf("keyring changed on a failed load: %q", s.ID)
	}
	if err := k.LoadFile(writeFile(t, "new v2\nold v\n")); err != nil {
		t.Fatal(err)
	}
	if s, _ := k.Newest(); s.ID != "new" || len(k.Secrets()) != 2 {
		t.Fatalf("after reload Newest = %q, %d secrets", s.ID, len(k.Secrets()))
	}
}

func TestValidateSecrets(t *testing.T) {
	tests := []struct {
		name    string
		in      []Secret
		wantErr error
	}{
		{name: "ok", in: []Secret{{"a", []byte("x")}, {"b-_9", []byte("y")}}},
		{name: "empty id", in: []Secret{{"", []byte("x")}}, wantErr: ErrBadKeyID},
		{name: "colon id", in: []Secret{{"a:b", []byte("x")}}, wantErr: ErrBadKeyID},
		{name: "empty value", in: []Secret{{"a", nil}}, wantErr: ErrEmptySecret},
		{name: "duplicate", in: []Secret{{"a", []byte("x")}, {"a", []byte("y")}}, wantErr: ErrDuplicateKeyID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateSecrets(tt.in); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestLoadUsersFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    map[string]string
		wantErr error
	}{
		{name: "plain and coturn shape", content: "# users\nalice:pw1\nuser=bob:p:w:2\n", want: map[string]string{"alice": "pw1", "bob": "p:w:2"}},
		{name: "empty file", content: "\n", want: map[string]string{}},
		{name: "no colon", content: "alice\n", wantErr: ErrBadLine},
		{name: "empty password", content: "alice:\n", wantErr: ErrBadLine},
		{name: "duplicate", content: "a:1\na:2\n", wantErr: ErrBadLine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadUsersFile(writeFile(t, tt.content))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("user %q = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}
