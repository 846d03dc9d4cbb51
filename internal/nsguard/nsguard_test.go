//go:build linux

package nsguard

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheck(t *testing.T) {
	t.Setenv(Env, "")
	if err := Check("attach"); err != nil {
		t.Fatalf("unarmed: %v", err)
	}
	Arm()
	armed := os.Getenv(Env)
	if !strings.HasPrefix(armed, "net:[") {
		t.Fatalf("armed with %q, want net:[inode]", armed)
	}
	err := Check("attach to lo")
	if err == nil || !strings.Contains(err.Error(), "attach to lo") || !strings.Contains(err.Error(), "data path") {
		t.Fatalf("armed, in the armed namespace: %v; want an error naming what and what to do", err)
	}

	// A child process keeps the record of the test that started it.
	t.Setenv(Env, "net:[1]")
	Arm()
	if got := os.Getenv(Env); got != "net:[1]" {
		t.Fatalf("Arm replaced an inherited record: %q", got)
	}
	t.Setenv(Env, armed)

	// In a namespace of the test's own, attaching is allowed.
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make a network namespace")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- Check("attach to lo")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in a new namespace: %v", err)
	}
}
