package auth

import (
	"testing"
	"time"
)

// TestRESTPasswordVectors checks RESTPassword against passwords computed
// independently with openssl (testdata/auth/rest_vectors.txt records the
// command next to each vector).
func TestRESTPasswordVectors(t *testing.T) {
	for _, row := range readVectors(t, "rest_vectors.txt", 3) {
		secret, username, want := row[0], row[1], row[2]
		t.Run(username, func(t *testing.T) {
			if got := RESTPassword([]byte(secret), username); got != want {
				t.Errorf("RESTPassword(%q, %q) = %q, want %q", secret, username, got, want)
			}
		})
	}
}

func TestMintREST(t *testing.T) {
	secret := []byte("north")
	tests := []struct {
		name     string
		user     string
		sep      string
		expiry   time.Time
		wantUser string
		wantPass string // from rest_vectors.txt where known
	}{
		{name: "with user", user: "alice", expiry: time.Unix(1700000000, 0), wantUser: "1700000000:alice", wantPass: "Cd/49soE35ICqcJF/bCTn8Z4OyE="},
		{name: "empty user", expiry: time.Unix(1700000000, 0), wantUser: "1700000000", wantPass: "CWyHi3zCeWqXBir9thl4m+iZPRY="},
		{name: "custom separator", user: "bob", sep: "-", expiry: time.Unix(42, 0), wantUser: "42-bob"},
		{name: "sub-second expiry truncates", user: "x", expiry: time.Unix(10, 999_999_999), wantUser: "10:x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u, p string
			if tt.sep == "" {
				u, p = MintREST(secret, tt.user, tt.expiry)
			} else {
				u, p = MintRESTSep(secret, tt.user, tt.expiry, tt.sep)
			}
			if u != tt.wantUser {
				t.Errorf("username = %q, want %q", u, tt.wantUser)
			}
			if tt.wantPass != "" && p != tt.wantPass {
				t.Errorf("password = %q, want %q", p, tt.wantPass)
			}
			if want := RESTPassword(secret, u); p != want {
				t.Errorf("password = %q, RESTPassword gives %q", p, want)
			}
		})
	}
}

func BenchmarkRESTPassword(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	const username = "4102444800:bob@example.com"
	b.ReportAllocs()
	b.SetBytes(int64(len(username)))
	for b.Loop() {
		_ = RESTPassword(secret, username)
	}
}
