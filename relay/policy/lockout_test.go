package policy

import (
	"fmt"
	"testing"
	"time"
)

func TestLockout(t *testing.T) {
	const limit, window = 3, int64(time.Minute)
	l := NewLockout(limit, time.Minute, 16)
	now := int64(1_000_000)
	for i := 1; i < limit; i++ {
		if l.Fail("alice", now) || l.Locked("alice", now) {
			t.Fatalf("locked after %d failures, limit %d", i, limit)
		}
	}
	if !l.Fail("alice", now) || !l.Locked("alice", now) {
		t.Fatalf("not locked after %d failures", limit)
	}
	if l.Locked("bob", now) {
		t.Fatal("another name is locked")
	}
	// Failures while locked do not extend the lock.
	l.Fail("alice", now+window-1)
	if !l.Locked("alice", now+window-1) || l.Locked("alice", now+window) {
		t.Fatal("the lock does not last exactly one window")
	}
	// Two failures per window, below the limit, never lock.
	for i := 0; i < 10; i++ {
		if l.Fail("carol", now+int64(i)*window/2) {
			t.Fatalf("locked at failure %d, two per window", i)
		}
	}
}

func TestLockoutDisabled(t *testing.T) {
	l := NewLockout(-1, time.Minute, 16)
	for i := 0; i < 100; i++ {
		if l.Fail("alice", int64(i)) {
			t.Fatal("a disabled lockout locked")
		}
	}
	if l.Locked("alice", 100) {
		t.Fatal("a disabled lockout locked")
	}
}

// Names are bounded: a full table forgets only names whose window and lock have passed.
func TestLockoutBounded(t *testing.T) {
	l := NewLockout(2, time.Minute, 4)
	now := int64(0)
	for i := 0; i < 4; i++ {
		l.Fail(fmt.Sprint("u", i), now)
	}
	l.Fail("u0", now) // u0 locked
	if l.Fail("new", now) {
		t.Fatal("a name beyond the bound was tracked and locked")
	}
	if len(l.names) != 4 {
		t.Fatalf("%d names tracked, bound 4", len(l.names))
	}
	later := now + int64(time.Minute)
	if !l.Locked("u0", later-1) {
		t.Fatal("the bound forgot a locked name")
	}
	l.Fail("new", later)
	if _, ok := l.names["new"]; !ok || len(l.names) > 4 {
		t.Fatalf("passed names not forgotten for a new one: %d tracked", len(l.names))
	}
}
