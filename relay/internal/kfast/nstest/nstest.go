//go:build linux

// Package nstest makes throwaway network namespaces for tests that attach programs or
// configure interfaces: never the host's own. It drives iproute2 (`ip`) for configuration and
// enters a namespace on a locked OS thread to open sockets or run programs there.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NS is a named network namespace that lives until the test ends.
type NS struct {
	Name string
	t    testing.TB
}

// Usable reports why namespaces cannot be made here ("" if they can).
func Usable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2 (ip) not installed"
	}
	return ""
}

// New makes a namespace with loopback up, deleted when t ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	if why := Usable(); why != "" {
		t.Skipf("network namespaces unavailable: %s", why)
	}
	var b [4]byte
	rand.Read(b[:])
	n := &NS{Name: prefix + hex.EncodeToString(b[:]), t: t}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Skipf("network namespaces unavailable: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	n.IP("link set lo up")
	return n
}

// IP runs `ip -n NS args…` and fails the test if it fails.
func (n *NS) IP(args string) string {
	n.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, strings.Fields(args)...)...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("ip -n %s %s: %v: %s", n.Name, args, err, out)
	}
	return string(out)
}

// Sysctl sets key (dotted, as sysctl takes it) to val in the namespace.
func (n *NS) Sysctl(key, val string) {
	n.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.Name, "sysctl", "-qw", key+"="+val).CombinedOutput()
	if err != nil {
		n.t.Fatalf("sysctl %s=%s in %s: %v: %s", key, val, n.Name, err, out)
	}
}

// Do runs fn on an OS thread inside the namespace. Sockets fn opens stay in it.
func (n *NS) Do(fn func()) {
	n.t.Helper()
	if err := n.do(fn); err != nil {
		n.t.Fatal(err)
	}
}

func (n *NS) do(fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with the goroutine.
			errc <- fmt.Errorf("setns back: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// Ifindex returns the index of interface name in the namespace.
func (n *NS) Ifindex(name string) int {
	n.t.Helper()
	var idx int
	var err error
	n.Do(func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(name); err == nil {
			idx = ifi.Index
		}
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return idx
}

// MAC returns the hardware address of interface name in the namespace.
func (n *NS) MAC(name string) net.HardwareAddr {
	n.t.Helper()
	var mac net.HardwareAddr
	var err error
	n.Do(func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(name); err == nil {
			mac = ifi.HardwareAddr
		}
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return mac
}

// TxChecksumOff turns transmit checksum offload off on interface name (as `ethtool -K name tx
// off` does). A veth passes a locally sent datagram on with its UDP checksum not yet computed
// (CHECKSUM_PARTIAL); a program that rewrites it at the other end needs it computed.
func (n *NS) TxChecksumOff(name string) {
	n.t.Helper()
	var err error
	n.Do(func() { err = ethtoolSet(name, 0x17 /* ETHTOOL_STXCSUM */, 0) })
	if err != nil {
		n.t.Fatalf("tx checksum off on %s: %v", name, err)
	}
}

func ethtoolSet(name string, cmd, val uint32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ev := struct{ cmd, data uint32 }{cmd, val}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	copy(ifr.name[:], name)
	ifr.data = uintptr(unsafe.Pointer(&ev))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	runtime.KeepAlive(&ev)
	return nil
}
