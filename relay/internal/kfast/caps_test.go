//go:build linux

package kfast

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadsWithCapBPF: the program loads for a non-root user holding only CAP_BPF and
// CAP_NET_ADMIN (what deploy/ grants), not CAP_PERFMON or CAP_SYS_ADMIN: the verifier is
// stricter then (no pointer arithmetic it cannot sanitise). It runs TestSlots (which loads
// the program) in a copy of this test binary under setpriv.
func TestLoadsWithCapBPF(t *testing.T) {
	if os.Getenv("AVEDGE_KFAST_CAPS") != "" {
		t.Skip("already the unprivileged run")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot drop to a user with only CAP_BPF and CAP_NET_ADMIN")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	newOffload(t) // skips where BPF is unavailable even to root
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kfast.test")
	copyFile(t, os.Args[0], bin)
	caps := "-all,+bpf,+net_admin"
	cmd := exec.Command(setpriv, "--reuid=65532", "--regid=65532", "--clear-groups",
		"--inh-caps="+caps, "--ambient-caps="+caps, "--bounding-set="+caps,
		bin, "-test.run=^TestSlots$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "AVEDGE_KFAST_CAPS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSlots") {
		t.Fatalf("load with CAP_BPF and CAP_NET_ADMIN only: %v\n%s", err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
