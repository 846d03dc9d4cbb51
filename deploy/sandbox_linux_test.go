//go:build linux

package deploy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The systemd unit cannot be started here (no systemd as PID 1), so TestSystemdUnitStarts
// rebuilds the parts of its sandbox that decide whether avedge starts with the shipped config
// and runs the built binary under them:
//
//   - RestrictAddressFamilies: a seccomp filter, as systemd installs one, that answers socket()
//     and socketpair() for every family not in the unit's list with EAFNOSUPPORT;
//   - DynamicUser + AmbientCapabilities=CAP_NET_BIND_SERVICE + NoNewPrivileges: an
//     unprivileged uid with that one ambient capability, no_new_privs set;
//   - the shipped avedge.yaml, unchanged, with the flags that make it run on this machine:
//     relay-ip 127.0.0.1 (instead of the documentation address), free ports, metrics on
//     loopback, a temporary secrets file. The wildcard listening-ip stays: its expansion is
//     what needs AF_NETLINK.
//
// Not rebuilt: the file-system protections, SystemCallFilter (io_uring falls back to epoll
// under it; the relay starts either way), IPAddressDeny (checked statically in TestSystemdUnit).
//
// The filter is classic BPF written with golang.org/x/sys/unix (SockFilter, SockFprog, the
// seccomp(2) system call), a dependency the module already has: the program is eleven
// instructions, which a library (libseccomp-golang needs cgo) would not make clearer. It is
// installed by this test binary, re-executed as a small launcher (sandboxEnv set), which then
// execs avedge: a seccomp filter survives execve.

// sandboxEnv, when set in the environment of this test binary, makes it a launcher: it installs
// the address-family filter for the comma-separated families in the variable, then execs
// os.Args[1] with os.Args[1:].
const sandboxEnv = "AVEDGE_TEST_SANDBOX_FAMILIES"

// sandboxUID is the unprivileged user avedge runs as, from systemd's DynamicUser range.
const sandboxUID = 61234

// addressFamilies maps the names RestrictAddressFamilies takes to their numbers.
var addressFamilies = map[string]uint32{
	"AF_UNIX":    unix.AF_UNIX,
	"AF_INET":    unix.AF_INET,
	"AF_INET6":   unix.AF_INET6,
	"AF_NETLINK": unix.AF_NETLINK,
	"AF_PACKET":  unix.AF_PACKET,
	"AF_VSOCK":   unix.AF_VSOCK,
}

// runSandboxLauncher runs only in the re-executed test binary and never returns there.
func runSandboxLauncher() {
	list, ok := os.LookupEnv(sandboxEnv)
	if !ok {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "sandbox launcher:", err)
		os.Exit(111)
	}
	var fams []uint32
	for _, name := range strings.Split(list, ",") {
		f, ok := addressFamilies[name]
		if !ok {
			fail(fmt.Errorf("unknown address family %q", name))
		}
		fams = append(fams, f)
	}
	if len(os.Args) < 2 {
		fail(errors.New("no program to run"))
	}
	prog, err := familyFilter(fams)
	if err != nil {
		fail(err)
	}
	runtime.LockOSThread() // capabilities are per thread: this one execs
	if os.Getenv(sandboxDropAmbientEnv) != "" {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
			fail(fmt.Errorf("PR_CAP_AMBIENT_CLEAR_ALL: %w", err))
		}
	}
	// Without CAP_SYS_ADMIN a filter needs no_new_privs; the unit sets it anyway
	// (NoNewPrivileges=yes).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		fail(fmt.Errorf("seccomp: %w", errno))
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, sandboxEnv+"=") || strings.HasPrefix(kv, sandboxDropAmbientEnv+"=")
	})
	fail(syscall.Exec(os.Args[1], os.Args[1:], env))
}

// familyFilter returns the seccomp program of RestrictAddressFamilies=<fams>: socket() and
// socketpair() with a family outside fams fail with EAFNOSUPPORT, everything else is allowed.
// System calls of another architecture are allowed too (the unit refuses them separately with
// SystemCallArchitectures=native).
func familyFilter(fams []uint32) ([]unix.SockFilter, error) {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return nil, fmt.Errorf("no seccomp audit arch for %s", runtime.GOARCH)
	}
	// struct seccomp_data: int nr at 0, __u32 arch at 4, __u64 ip at 8, __u64 args[6] at 16;
	// the family is the low 32 bits of args[0], at 16 on these little-endian machines.
	const offNR, offArch, offArg0 = 0, 4, 16
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	allow := ret(unix.SECCOMP_RET_ALLOW)
	refuse := ret(unix.SECCOMP_RET_ERRNO | uint32(unix.EAFNOSUPPORT))

	n := len(fams)
	if n > 200 {
		return nil, errors.New("too many families")
	}
	prog := []unix.SockFilter{
		ld(offArch),
		jeq(arch, 1, 0), // native: go on at 3
		allow,
		ld(offNR),
		jeq(unix.SYS_SOCKET, 2, 0), // → 7
		jeq(unix.SYS_SOCKETPAIR, 1, 0),
		allow,
		ld(offArg0), // 7
	}
	for i, f := range fams {
		prog = append(prog, jeq(f, uint8(n-i), 0)) // → the final allow
	}
	return append(prog, refuse, allow), nil
}

var (
	avedgeOnce       sync.Once
	avedgeBin        string
	avedgeBuildError error
)

// sandboxBinaries returns the built avedge and a copy of this test binary (the launcher), in
// a directory the unprivileged users can read (go test's own directories are private to root).
func sandboxBinaries(t *testing.T) (avedge, launcher string) {
	t.Helper()
	avedgeOnce.Do(func() {
		// Under TestMain's directory (removed at the end), opened to the other users.
		dir := filepath.Join(testDir, "sandbox")
		if err := os.Mkdir(dir, 0o755); err != nil {
			avedgeBuildError = err
			return
		}
		if err := os.Chmod(testDir, 0o755); err != nil {
			avedgeBuildError = err
			return
		}
		if avedgeBin, avedgeBuildError = buildCommand(dir, "avedge"); avedgeBuildError != nil {
			return
		}
		self, err := os.Executable()
		if err != nil {
			avedgeBuildError = err
			return
		}
		avedgeBuildError = copyFile(self, filepath.Join(dir, "launcher"), 0o755)
	})
	if avedgeBuildError != nil {
		t.Fatalf("build: %v", avedgeBuildError)
	}
	return avedgeBin, filepath.Join(filepath.Dir(avedgeBin), "launcher")
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}

// freePort returns a port that is free for TCP and UDP on 0.0.0.0, below 1024 when low, and
// outside the shipped relay range 50000-59999 either way.
func freePort(t *testing.T, low bool) int {
	t.Helper()
	try := func(p int) (int, bool) {
		tl, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			return 0, false
		}
		defer tl.Close()
		p = tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			return 0, false
		}
		ul.Close()
		return p, p < 50000 || p > 59999
	}
	if low {
		for _, p := range append([]int{443}, 1000, 1001, 1002, 1003, 1004, 1005) {
			if got, ok := try(p); ok {
				return got
			}
		}
		t.Skip("no free port below 1024")
	}
	for range 20 {
		if p, ok := try(0); ok {
			return p
		}
	}
	t.Fatal("no free port outside the relay range")
	return 0
}

// sandboxRun says how startSandboxed runs avedge.
type sandboxRun struct {
	bin        string    // the avedge binary; "": the plain build
	uid        uint32    // the user it runs as
	configFile string    // the YAML it reads, copied to a file avedge can read
	args       []string  // its arguments; "{config}" in one stands for the copied file
	fams       []string  // address families socket() accepts
	caps       []uintptr // ambient capabilities given to the launcher
	// dropAmbient makes the launcher clear its ambient set before exec, keeping caps only
	// in its permitted set, as container runtimes do (Kubernetes sets no ambient
	// capabilities): avedge then gets a capability only through its file capability.
	dropAmbient bool
}

// sandboxDropAmbientEnv asks the launcher to clear its ambient capabilities before exec.
const sandboxDropAmbientEnv = "AVEDGE_TEST_SANDBOX_DROP_AMBIENT"

// startSandboxed runs avedge as r says, with the listeners moved to free ports (the extra
// listener to one below 1024) and metrics on loopback, and reports whether it became ready
// (its /readyz answered 200) and everything it wrote.
//
// The ports are free when freePort picks them, but a socket of another test (go test runs
// packages in parallel, in the same network namespace under make test) may take one before
// avedge binds it. A run that failed so ("address already in use") is run again on fresh
// ports, at most twice; one that fails so three times in a row still fails.
func startSandboxed(t *testing.T, r sandboxRun) (ready bool, output string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ready, output = startSandboxedOnce(t, r)
		if ready || attempt == 3 || !strings.Contains(output, "address already in use") {
			return ready, output
		}
		t.Logf("a port picked free was taken before avedge bound it; attempt %d on fresh ports:\n%s", attempt+1, output)
	}
}

// startSandboxedOnce is one run of startSandboxed.
func startSandboxedOnce(t *testing.T, r sandboxRun) (ready bool, output string) {
	t.Helper()
	bin, launcher := sandboxBinaries(t)
	if r.bin != "" {
		bin = r.bin
	}
	dir, err := os.MkdirTemp("", "avedge-unit-run")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "avedge.yaml")
	if err := copyFile(r.configFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(dir, "static-auth-secrets")
	if err := os.WriteFile(secrets, []byte("k1 0123456789abcdef0123456789abcdef\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(secrets, int(r.uid), int(r.uid)); err != nil {
		t.Fatal(err)
	}
	// What the unit's RuntimeDirectory (/run/avedge) is under systemd: the service user's own
	// directory, where the config puts the admin socket.
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(runDir, int(r.uid), int(r.uid)); err != nil {
		t.Fatal(err)
	}
	turnPort, lowPort, metricsPort := freePort(t, false), freePort(t, true), freePort(t, false)
	var args []string
	for _, a := range r.args {
		args = append(args, strings.ReplaceAll(a, "{config}", cfg))
	}
	args = append(args,
		"--relay-ip=127.0.0.1",
		"--listening-port="+strconv.Itoa(turnPort),
		fmt.Sprintf("--listen=tcp/0.0.0.0:%d", lowPort),
		fmt.Sprintf("--metrics-listen=127.0.0.1:%d", metricsPort),
		"--static-auth-secret-file="+secrets,
		"--admin-socket="+filepath.Join(runDir, "admin.sock"),
		// Unprivileged, it could not attach the kernel fast path anyway; pinned all the same,
		// as every relay the tests start outside a namespace of their own is.
		"--data-path=epoll",
	)
	cmd := exec.Command(launcher, append([]string{bin}, args...)...)
	cmd.Env = append(os.Environ(), sandboxEnv+"="+strings.Join(r.fams, ","))
	if r.dropAmbient {
		cmd.Env = append(cmd.Env, sandboxDropAmbientEnv+"=1")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: r.uid, Gid: r.uid},
		AmbientCaps: r.caps,
		Setpgid:     true,
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	listening := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), `"metrics listening"`) { // text or JSON log
				once.Do(func() { close(listening) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		<-scanned
		_ = cmd.Wait()
		mu.Lock()
		output = out.String()
		mu.Unlock()
	}()
	select {
	case <-listening:
	case <-scanned: // exited before serving
		return false, ""
	case <-time.After(30 * time.Second):
		t.Error("avedge neither served nor exited within 30s")
		return false, ""
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", metricsPort))
	if err != nil {
		t.Errorf("/readyz: %v", err)
		return false, ""
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, ""
}

// TestSystemdUnitStarts starts avedge with the shipped avedge.yaml under the shipped unit's
// RestrictAddressFamilies (and as an unprivileged user holding only CAP_NET_BIND_SERVICE, for
// the low port): it must become ready; with AF_NETLINK taken out of the list it must not.
// Run it in a network namespace of its own: it listens on 0.0.0.0.
func TestSystemdUnitStarts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run avedge as another user with an ambient capability")
	}
	u := parseUnit(t, filepath.Join(systemdDir, "avedge.service"))
	rafs := u.one(t, "Service", "RestrictAddressFamilies")
	if strings.HasPrefix(rafs, "~") {
		t.Fatalf("RestrictAddressFamilies=%s is a deny list; the unit should list what it allows", rafs)
	}
	fams := strings.Fields(rafs)
	for _, f := range fams {
		if _, ok := addressFamilies[f]; !ok {
			t.Fatalf("RestrictAddressFamilies: %s unknown to this test", f)
		}
	}
	execStart := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(execStart) < 2 || !slices.Contains(execStart, "--config=/etc/avedge/avedge.yaml") {
		t.Fatalf("ExecStart=%v: want avedge --config=/etc/avedge/avedge.yaml", execStart)
	}
	// The expansion this is about happens only for a wildcard listening address.
	var wildcard bool
	o := loadSystemdConfig(t)
	for _, ip := range o.ListeningIPs {
		if a, err := netip.ParseAddr(ip); err == nil && a.IsUnspecified() {
			wildcard = true
		}
	}
	if !wildcard {
		t.Log("the shipped config listens on no wildcard address: AF_NETLINK is not needed by it")
	}

	if got := u.one(t, "Service", "AmbientCapabilities"); got != "CAP_NET_BIND_SERVICE" {
		t.Fatalf("AmbientCapabilities=%s: this test grants CAP_NET_BIND_SERVICE only", got)
	}
	unitCaps := []uintptr{unix.CAP_NET_BIND_SERVICE}
	unitRun := func(fams []string, caps []uintptr) sandboxRun {
		var args []string
		for _, a := range execStart[1:] {
			args = append(args, strings.Replace(a, "=/etc/avedge/avedge.yaml", "={config}", 1))
		}
		return sandboxRun{uid: sandboxUID, configFile: filepath.Join(systemdDir, "avedge.yaml"), args: args, fams: fams, caps: caps}
	}

	t.Run("as shipped", func(t *testing.T) {
		ready, out := startSandboxed(t, unitRun(fams, unitCaps))
		if !ready {
			t.Fatalf("avedge did not become ready under RestrictAddressFamilies=%s:\n%s", rafs, out)
		}
	})
	t.Run("without AF_NETLINK", func(t *testing.T) {
		if !wildcard {
			t.Skip("no wildcard listening address")
		}
		less := slices.DeleteFunc(slices.Clone(fams), func(f string) bool { return f == "AF_NETLINK" })
		ready, out := startSandboxed(t, unitRun(less, unitCaps))
		if ready {
			t.Fatalf("avedge became ready without AF_NETLINK (RestrictAddressFamilies=%s): the test proves nothing", strings.Join(less, " "))
		}
		if !strings.Contains(out, "address family not supported") {
			t.Errorf("avedge failed, but not for the missing address family:\n%s", out)
		}
	})
	// The launcher really runs avedge unprivileged: without the capability the low port fails.
	t.Run("without CAP_NET_BIND_SERVICE", func(t *testing.T) {
		ready, out := startSandboxed(t, unitRun(fams, nil))
		if ready || !strings.Contains(out, "permission denied") {
			t.Fatalf("ready %v without CAP_NET_BIND_SERVICE, want a refused bind of the low port:\n%s", ready, out)
		}
	})
}

// TestDaemonSetBindsLowPortUnprivileged runs avedge with the ConfigMap's avedge.yaml as the
// DaemonSet's container would: as its runAsUser, with no_new_privs (allowPrivilegeEscalation:
// false), the added capabilities in the permitted set but none ambient (Kubernetes sets no
// ambient capabilities), and the binary carrying the file capability the Dockerfile sets. It
// must become ready with its low-port listener; the same binary without the file capability
// must fail to bind, which shows the file capability is what makes the unprivileged relay work.
// (Not rebuilt: the runtime's own seccomp profile and bounding set, the read-only root.)
func TestDaemonSetBindsLowPortUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run avedge as another user with a capability")
	}
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		t.Skip("setcap not installed")
	}
	p := loadPool(t)
	rs := loadRelay(t, p)
	c := rs.c
	if c.SecurityContext.RunAsUser == nil || *c.SecurityContext.RunAsUser == 0 {
		t.Fatal("the relay container does not run as a non-root runAsUser")
	}
	var caps []uintptr
	for _, name := range c.SecurityContext.Capabilities.Add {
		if name != "NET_BIND_SERVICE" {
			t.Fatalf("capability %s added: this test knows NET_BIND_SERVICE only", name)
		}
		caps = append(caps, unix.CAP_NET_BIND_SERVICE)
	}
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`setcap (\S+) /out/avedge\b`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile sets no file capability on /out/avedge")
	}
	cfg := filepath.Join(t.TempDir(), "avedge.yaml")
	if err := os.WriteFile(cfg, []byte(rs.yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var fams []string
	for f := range addressFamilies {
		fams = append(fams, f)
	}
	plain, _ := sandboxBinaries(t)
	withCap := filepath.Join(filepath.Dir(plain), "avedge-filecap")
	if err := copyFile(plain, withCap, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(setcap, string(m[1]), withCap).CombinedOutput(); err != nil {
		t.Skipf("setcap %s: %v: %s (file system without security xattrs?)", m[1], err, out)
	}
	run := func(bin string) sandboxRun {
		return sandboxRun{bin: bin, uid: uint32(*c.SecurityContext.RunAsUser), configFile: cfg,
			args: []string{"--config={config}"}, fams: fams, caps: caps, dropAmbient: true}
	}
	t.Run("with the image's file capability", func(t *testing.T) {
		if ready, out := startSandboxed(t, run(withCap)); !ready {
			t.Fatalf("avedge did not become ready:\n%s", out)
		}
	})
	t.Run("without it", func(t *testing.T) {
		if ready, out := startSandboxed(t, run(plain)); ready || !strings.Contains(out, "permission denied") {
			t.Fatalf("ready %v: want the low port refused without the file capability:\n%s", ready, out)
		}
	})
}
