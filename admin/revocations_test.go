package admin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRevocationsRefused(t *testing.T) {
	r, err := NewRevocations("")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if r.Refused("1700000000:alice", "alice", now) {
		t.Fatal("refused with an empty list")
	}
	for _, e := range []Revocation{
		{Username: "alice"},
		{Username: "1900000000:bob", Until: now.Add(time.Hour)},
		{Username: "carol", Until: now.Add(-time.Second)}, // lapsed
	} {
		if err := r.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		username, user string
		want           bool
	}{
		{"alice", "alice", true},               // static user
		{"1900000000:alice", "alice", true},    // any credential of the user
		{"1900000000:bob", "bob", true},        // that username
		{"1900000001:bob", "bob", false},       // another credential of bob
		{"carol", "carol", false},              // lapsed
		{"1900000000:alicex", "alicex", false}, // no prefix match
	} {
		if got := r.Refused(tc.username, tc.user, now); got != tc.want {
			t.Errorf("Refused(%q, %q) = %v, want %v", tc.username, tc.user, got, tc.want)
		}
	}
	if r.Refused("1900000000:bob", "bob", now.Add(2*time.Hour)) {
		t.Error("refused after Until")
	}
	if n := r.Len(); n != 2 {
		t.Errorf("Len = %d, want 2 (carol lapsed)", n)
	}
	if ok, _ := r.Remove("alice"); !ok || r.Refused("alice", "alice", now) {
		t.Error("alice still refused after Remove")
	}
	if ok, _ := r.Remove("alice"); ok {
		t.Error("Remove of no revocation reported one")
	}
}

// The file: what Add writes, a new Revocations (another relay) reads; Reload reports what
// is new; a file that does not parse is refused and the list in force stays.
func TestRevocationsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.json")
	a, err := NewRevocations(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	b, _ := NewRevocations(path)
	if err := a.Add(Revocation{Username: "alice", Reason: "stolen laptop"}); err != nil {
		t.Fatal(err)
	}
	added, err := b.Reload()
	if err != nil || len(added) != 1 || added[0].Username != "alice" || added[0].Reason != "stolen laptop" {
		t.Fatalf("Reload = %+v, %v", added, err)
	}
	if added, _ := b.Reload(); len(added) != 0 {
		t.Errorf("second Reload added %+v", added)
	}
	if err := os.WriteFile(path, []byte(`{"revocations": [{"username": ""}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reload(); !errors.Is(err, ErrBadRevocations) || !strings.Contains(err.Error(), "entry 1") {
		t.Errorf("Reload of an empty username: %v", err)
	}
	if !b.Refused("alice", "alice", time.Now()) {
		t.Error("a refused reload dropped the list in force")
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reload(); err != nil || b.Len() != 0 {
		t.Errorf("empty file: %v, %d in force", err, b.Len())
	}
	if _, err := NewRevocations(filepath.Join(t.TempDir(), "x")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	// A file that cannot be written: the revocation applies here anyway, and Add says so.
	ro := filepath.Join(t.TempDir(), "ro", "revocations.json")
	r, _ := NewRevocations(ro)
	if err := r.Add(Revocation{Username: "bob"}); err == nil || !r.Refused("bob", "bob", time.Now()) {
		t.Errorf("Add to an unwritable file: %v, refused %v", err, r.Refused("bob", "bob", time.Now()))
	}
}

// FuzzParseRevocations: the revocations file (edited by people, shared by a pool) never
// panics the parser, and what it accepts has valid usernames and survives a write and a read.
func FuzzParseRevocations(f *testing.F) {
	f.Add([]byte(`{"revocations": [{"username": "alice", "until": "2026-12-04T00:00:00Z", "created": "2026-12-03T00:00:00Z", "reason": "x"}]}`))
	f.Add([]byte(`{"revocations": []}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"revocations": [{"username": ""}]}`))
	f.Add([]byte(`{"revocations": null, "extra": 1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := parseRevocations(b)
		if err != nil {
			return
		}
		for _, e := range list {
			if checkUsername(e.Username) != nil {
				t.Fatalf("accepted username %q", e.Username)
			}
		}
	})
}
