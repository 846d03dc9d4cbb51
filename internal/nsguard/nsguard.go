// Package nsguard keeps test suites from attaching BPF programs to the host's own interfaces.
// Tests attach programs only inside network namespaces they create; a relay a test starts on
// loopback with the default data path (auto) would otherwise put the kernel fast path on the
// host's lo when the tests run as root.
//
// A test binary arms the guard in its TestMain (Arm), which records the network namespace the
// binary started in; package kfast asks Check before it attaches a program and panics when the
// calling thread is still in that namespace. The record is an environment variable, so the
// processes a test starts inherit it: a relay binary run without being moved into a namespace
// of the test's own (ip netns exec) is caught as well, and a test binary re-run as a child
// inside such a namespace keeps the outer record rather than taking its new namespace for the
// host's.
package nsguard

import (
	"fmt"
	"os"
)

// Env is the environment variable that holds the armed namespace ("net:[inode]", as
// /proc/PID/ns/net reads).
const Env = "AVEDGE_NSGUARD"

// Arm records the calling process's network namespace as the one programs may not be attached
// in, unless a parent test process recorded its own already. Call it from TestMain, before
// anything moves a thread to another namespace. Where there is no /proc/thread-self (not
// Linux: no kernel fast path either) it arms nothing.
func Arm() {
	if os.Getenv(Env) != "" {
		return
	}
	if ns, err := current(); err == nil {
		os.Setenv(Env, ns)
	}
}

// Check returns an error when the guard is armed and the calling thread is in the armed
// namespace; what names what was about to happen there. It fails closed: an armed guard that
// cannot read the thread's namespace refuses too.
func Check(what string) error {
	armed := os.Getenv(Env)
	if armed == "" {
		return nil
	}
	ns, err := current()
	if err != nil {
		return fmt.Errorf("nsguard: %s: cannot read this thread's network namespace: %w", what, err)
	}
	if ns == armed {
		return fmt.Errorf("nsguard: %s in the network namespace the tests started in (%s), not in one the test created: "+
			"give the relay a user-space data path (io_uring or epoll) or run it inside a namespace the test makes (nstest)", what, ns)
	}
	return nil
}

// current returns the calling thread's network namespace.
func current() (string, error) {
	return os.Readlink("/proc/thread-self/ns/net")
}
