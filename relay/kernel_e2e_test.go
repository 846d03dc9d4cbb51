//go:build linux

package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/internal/testnet"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/kfast"
	"github.com/avedge/avedge/relay/internal/kfast/nstest"
)

// The kernel fast path end to end: a relay (data path offload) in a namespace of its own, a
// pion TURN client and a peer in another, joined by a veth pair. The relay runs in a child
// process started inside its namespace (a Go process cannot move all its threads, and pion
// opens relay sockets from its own goroutines); it answers "stats" on stdin with its
// metrics.Snapshot.

const kfastChildEnv = "AVEDGE_KFAST_CHILD"

// TestKernelRelayChild is the relay of TestKernelFastPath, run only as its child.
func TestKernelRelayChild(t *testing.T) {
	spec := os.Getenv(kfastChildEnv)
	if spec == "" {
		t.Skip("child process of TestKernelFastPath")
	}
	parts := strings.Fields(spec) // listen address, relay IP, data path, allowed peer prefix, permission lifetime, lowest relay port, offload attach
	lis, err1 := netip.ParseAddrPort(parts[0])
	permLife, err5 := time.ParseDuration(parts[4])
	relayIP, err4 := netip.ParseAddr(parts[1])
	dp, err3 := ParseDataPath(parts[2])
	allow, err2 := netip.ParsePrefix(parts[3])
	minPort, err6 := strconv.ParseUint(parts[5], 10, 16)
	attach, err7 := ParseOffloadAttach(parts[6])
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		fmt.Println("bad spec:", err)
		os.Exit(2)
	}
	s, err := New(Config{
		Listeners: []ListenerConfig{{Network: UDP, Addr: lis}},
		RelayIPs:  []netip.Addr{relayIP},
		MinPort:   uint16(minPort), MaxPort: uint16(minPort) + 99,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: testSecret})}),
		Peers:     PeerPolicy{Allow: []netip.Prefix{allow}, AllowLoopback: allow.Addr().IsLoopback()},
		Workers:   1,
		DataPath:  dp,

		OffloadAttach:      attach,
		PermissionLifetime: permLife,
		Logger:             testLogger(t),
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer s.Close()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		b, _ := json.Marshal(s.Stats())
		fmt.Println(string(b))
	}
}

type kernelRelay struct {
	cmd    *exec.Cmd
	in     interface{ Write([]byte) (int, error) }
	out    *bufio.Scanner
	killed bool
}

// kill ends the relay process with SIGKILL, as a crash would, and waits for it.
func (r *kernelRelay) kill(t testing.TB) {
	t.Helper()
	r.killed = true
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = r.cmd.Wait()
}

func (r *kernelRelay) stats(t testing.TB) metrics.Snapshot {
	t.Helper()
	if _, err := r.in.Write([]byte("stats\n")); err != nil {
		t.Fatal(err)
	}
	var sn metrics.Snapshot
	if !r.out.Scan() {
		t.Fatalf("relay process: no stats: %v", r.out.Err())
	}
	if err := json.Unmarshal(r.out.Bytes(), &sn); err != nil {
		t.Fatalf("relay process: %v: %s", err, r.out.Bytes())
	}
	return sn
}

// kernelFamily is one address family's addresses of the kernel fast path's topology.
type kernelFamily struct {
	name, relay, client, peer, prefix, network string
	bits                                       int
	wildcard                                   bool // the relay listens on 0.0.0.0 or [::]
	loopback                                   bool // everything on lo in one namespace
}

var kernelFamilies = []kernelFamily{
	{"ipv4", "10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.0/24", "udp4", 24, false, false},
	{"ipv6", "fd09::1", "fd09::2", "fd09::3", "fd09::/64", "udp6", 64, false, false},
	{"ipv4 wildcard listener", "10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.0/24", "udp4", 24, true, false},
	{"ipv6 wildcard listener", "fd09::1", "fd09::2", "fd09::3", "fd09::/64", "udp6", 64, true, false},
}

// loopFamilies are the loopback topology: relay, client and peer in one namespace, on lo
// (the tc variant).
var loopFamilies = []kernelFamily{
	{name: "ipv4 loopback", relay: "127.0.0.1", client: "127.0.0.2", peer: "127.0.0.3", prefix: "127.0.0.0/8", network: "udp4", bits: 8, loopback: true},
	{name: "ipv6 loopback", relay: "::1", client: "::1", peer: "::1", prefix: "::1/128", network: "udp6", bits: 128, loopback: true},
}

// kernelTopo is a relay in namespace r and a TURN client with an allocation and an echoing
// peer in namespace c, joined by veth v0 (r) – v1 (c).
type kernelTopo struct {
	r, c     *nstest.NS
	lis      netip.AddrPort // where the client sends
	spec     string         // the relay process's (startKernelRelay)
	rel      *kernelRelay
	relayed  net.PacketConn // the client's relayed connection
	peerAddr net.Addr
	buf      []byte
}

// warmUp is what the topology sends until the relay's path is set up.
var warmUp = []byte("warm-up")

// newKernelTopo builds the topology with the relay on data path dp, attaching as it chooses
// (offload-attach auto), with an XDP program on the veth's far end. It skips tb when
// namespaces or BPF are unavailable.
func newKernelTopo(tb testing.TB, f kernelFamily, dp DataPath) *kernelTopo {
	return newKernelTopoWith(tb, f, dp, 0)
}

// newKernelTopoWith is newKernelTopo with a permission lifetime (0: pion's default).
func newKernelTopoWith(tb testing.TB, f kernelFamily, dp DataPath, permLife time.Duration) *kernelTopo {
	tb.Helper()
	return newKernelTopoIn(tb, f, dp, permLife, nil, 0, OffloadAttachAuto, true)
}

// newKernelTopoAttach is newKernelTopo with an attach choice, and an XDP program on the veth's
// far end only if farXDP.
func newKernelTopoAttach(tb testing.TB, f kernelFamily, dp DataPath, attach OffloadAttach, farXDP bool) *kernelTopo {
	tb.Helper()
	return newKernelTopoIn(tb, f, dp, 0, nil, 0, attach, farXDP)
}

// newKernelTopoIn is newKernelTopoWith in namespace r with a relay and its client and peer
// that are the n-th there (loopback only; r nil: a new namespace, n 0): the relay listens on
// port 3478+n and relays from ports 21000+100n, the peer on port 40001+n; it attaches by
// attach, with an XDP program on the veth's far end only if farXDP.
func newKernelTopoIn(tb testing.TB, f kernelFamily, dp DataPath, permLife time.Duration, r *nstest.NS, n uint16, attach OffloadAttach, farXDP bool) *kernelTopo {
	tb.Helper()
	if why := nstest.Usable(); why != "" {
		tb.Skipf("network namespaces unavailable: %s", why)
	}
	pass, err := kfast.New(kfast.Config{Slots: 1})
	if errors.Is(err, kfast.ErrUnavailable) {
		tb.Skipf("BPF unavailable: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pass.Close() })
	if r == nil {
		r = nstest.New(tb, "kfer")
	}
	k := &kernelTopo{r: r, buf: make([]byte, 2048)}
	if f.loopback {
		k.c = k.r
	} else {
		k.c = nstest.New(tb, "kfec")
		far := pass
		if !farXDP {
			far = nil
		}
		k.vethTopo(tb, f, far)
	}
	k.lis = netip.AddrPortFrom(netip.MustParseAddr(f.relay), 3478+n)
	listen := k.lis
	if f.wildcard {
		any := netip.IPv4Unspecified()
		if k.lis.Addr().Is6() {
			any = netip.IPv6Unspecified()
		}
		listen = netip.AddrPortFrom(any, 3478+n)
	}
	dps := string(dp)
	if dp == DataPathAuto {
		dps = "auto" // ParseDataPath's name for it; "" would vanish from the spec's fields
	}
	att := string(attach)
	if attach == OffloadAttachAuto {
		att = "auto"
	}
	k.spec = fmt.Sprintf("%s %s %s %s %s %d %s", listen, f.relay, dps, f.prefix, permLife, 21000+100*int(n), att)
	k.rel = startKernelRelay(tb, k.r, k.spec)

	var pc, peer net.PacketConn
	k.c.Do(func() {
		if pc, err = net.ListenPacket(f.network, net.JoinHostPort(f.client, "0")); err != nil {
			return
		}
		peer, err = net.ListenPacket(f.network, net.JoinHostPort(f.peer, strconv.Itoa(40001+int(n))))
	})
	if err != nil {
		tb.Fatal(err)
	}
	testnet.EchoOn(tb, peer)
	k.peerAddr = peer.LocalAddr()
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: k.lis.String(), TURNServerAddr: k.lis.String(),
		Conn: pc, Username: username, Password: password, Realm: "avedge",
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close(); pc.Close() })
	if err := cl.Listen(); err != nil {
		tb.Fatal(err)
	}
	if k.relayed, err = cl.Allocate(); err != nil {
		tb.Fatalf("Allocate: %v", err)
	}
	tb.Cleanup(func() { k.relayed.Close() })
	return k
}

// vethTopo joins k.r and k.c by veth v0 (relay: f.relay) – v1 (f.client, f.peer), with the
// pass program pass on v1 (none if pass is nil).
func (k *kernelTopo) vethTopo(tb testing.TB, f kernelFamily, pass *kfast.Offload) {
	tb.Helper()
	r, c := k.r, k.c
	r.IP("link add v0 type veth peer name v1 netns " + c.Name)
	for _, a := range []struct {
		ns   *nstest.NS
		dev  string
		addr string
	}{{r, "v0", f.relay}, {c, "v1", f.client}, {c, "v1", f.peer}} {
		a.ns.IP(fmt.Sprintf("addr add %s/%d dev %s nodad", a.addr, f.bits, a.dev))
	}
	r.IP("link set v0 up")
	c.IP("link set v1 up")
	fam := "ipv4"
	if strings.Contains(f.relay, ":") {
		fam = "ipv6"
	}
	r.Sysctl("net."+fam+".conf.v0.forwarding", "1")
	// The client's and peer's datagrams reach the relay's veth with their UDP checksums not
	// computed (CHECKSUM_PARTIAL): the relay sees a veth and has the program compute them.
	// XDP_TX into a veth needs NAPI on its far end: a program there gives it.
	if pass == nil {
		return
	}
	var err error
	c.Do(func() { _, err = pass.AttachPass(c.Ifindex("v1"), kfast.ModeNative) })
	if err != nil {
		tb.Fatal(err)
	}
}

// round sends msg through the relay to the peer and reads its echo.
func (k *kernelTopo) round(msg []byte) error {
	if _, err := k.relayed.WriteTo(msg, k.peerAddr); err != nil {
		return err
	}
	// Long enough for neighbour discovery: a round that gave up would leave an echo in
	// flight, to be counted in a measured window.
	k.relayed.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, from, err := k.relayed.ReadFrom(k.buf)
		if err != nil {
			return err
		}
		if bytes.Equal(k.buf[:n], warmUp) && !bytes.Equal(msg, warmUp) {
			continue // a late echo of the warm-up
		}
		if from.String() != k.peerAddr.String() || !bytes.Equal(k.buf[:n], msg) {
			return fmt.Errorf("echo of %d bytes from %v, want %d from %v", n, from, len(msg), k.peerAddr)
		}
		return nil
	}
}

// warm sends until the relay's path is set up: the client's channel bound (pion binds it in
// the background) and, with the kernel path, the relay's kernel knowing both neighbours and
// relaying both ways.
func (k *kernelTopo) warm(tb testing.TB, kernel bool) {
	tb.Helper()
	for i := 0; ; i++ {
		err := k.round(warmUp)
		st := k.rel.stats(tb)
		ch := st.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets > 0 && st.Traffic[metrics.PeerToClient][metrics.PathChannel].Packets > 0
		if kernel {
			ch = st.Kernel[metrics.ClientToPeer].Packets > 0 && st.Kernel[metrics.PeerToClient].Packets > 0
		}
		if err == nil && ch {
			return
		}
		if i == 20 {
			tb.Fatalf("path not set up after %d round trips (last: %v): %+v, kernel %+v, drops %v", i, err, st.Traffic, st.Kernel, st.Drops)
		}
	}
}

// attached reports whether the relay's program is on its interface: XDP or the tc variant
// on v0, or the tc variant on lo.
func (k *kernelTopo) attached(tb testing.TB, f kernelFamily) bool {
	tb.Helper()
	if f.loopback {
		return k.tcx(tb, "lo")
	}
	return strings.Contains(k.r.IP("link show dev v0"), "xdp") || k.tcx(tb, "v0")
}

// tcx reports whether a program is on the tcx ingress of the relay namespace's interface dev.
func (k *kernelTopo) tcx(tb testing.TB, dev string) bool {
	tb.Helper()
	var q *link.QueryResult
	var err error
	k.r.Do(func() {
		q, err = link.QueryPrograms(link.QueryOptions{Target: k.r.Ifindex(dev), Attach: ebpf.AttachTCXIngress})
	})
	if err != nil {
		tb.Fatalf("query %s's tcx programs: %v", dev, err)
	}
	return len(q.Programs) > 0
}

// TestKernelFastPath relays through the kernel fast path: over a veth (native XDP, with a
// program on the far end, and the tc variant, without one) and on loopback in a namespace of
// the test's own (the tc variant).
func TestKernelFastPath(t *testing.T) {
	type run struct {
		f      kernelFamily
		attach OffloadAttach
	}
	var runs []run
	for _, f := range kernelFamilies {
		runs = append(runs, run{f, OffloadAttachXDP}, run{f, OffloadAttachTC})
	}
	for _, f := range loopFamilies {
		runs = append(runs, run{f, OffloadAttachAuto})
	}
	for _, r := range runs {
		f := r.f
		name := f.name
		if !f.loopback {
			name += " " + string(r.attach)
		}
		t.Run(name, func(t *testing.T) {
			k := newKernelTopoAttach(t, f, DataPathOffload, r.attach, r.attach == OffloadAttachXDP)
			if !f.loopback && k.tcx(t, "v0") != (r.attach == OffloadAttachTC) {
				t.Fatalf("offload-attach %s: tc variant on v0 %v", r.attach, k.tcx(t, "v0"))
			}
			k.warm(t, true)
			k.relayInKernel(t, 200)

			// A crash leaves nothing attached (the links die with the process's file
			// descriptors; nothing is pinned), and a restarted relay attaches again.
			k.rel.kill(t)
			if k.attached(t, f) {
				t.Fatal("program left attached after the relay was killed")
			}
			startKernelRelay(t, k.r, k.spec)
			if !k.attached(t, f) {
				t.Fatal("restarted relay attached nothing")
			}
		})
	}
}

// relayInKernel makes n round trips of varied sizes through k's relay, whose path is set up
// (warm), and checks that the kernel relayed every one of them in both directions and user
// space none: the kernel's counters up by exactly n packets and their bytes, and the channel
// counters (both paths together) by as many.
func (k *kernelTopo) relayInKernel(t *testing.T, n int) {
	t.Helper()
	before := k.rel.stats(t)
	var bytesSent uint64
	for i := range n {
		msg := bytes.Repeat([]byte{byte(i)}, 1+(i*37)%1200)
		bytesSent += uint64(len(msg))
		if err := k.round(msg); err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
	}
	after := k.rel.stats(t)
	for d := range metrics.NumDirections {
		kp := after.Kernel[d].Packets - before.Kernel[d].Packets
		kb := after.Kernel[d].Bytes - before.Kernel[d].Bytes
		all := after.Traffic[d][metrics.PathChannel].Packets - before.Traffic[d][metrics.PathChannel].Packets
		allb := after.Traffic[d][metrics.PathChannel].Bytes - before.Traffic[d][metrics.PathChannel].Bytes
		if kp != uint64(n) || kb != bytesSent {
			t.Errorf("%v: kernel relayed %d packets, %d bytes; want %d, %d", d, kp, kb, n, bytesSent)
		}
		if all != kp || allb != kb {
			t.Errorf("%v: channel traffic +%d packets, +%d bytes, but the kernel relayed %d, %d: user space relayed some", d, all, allb, kp, kb)
		}
	}
}

// TestKernelFastPathPermissionExpiry: when pion lets a permission expire, the kernel stops
// relaying the channel to that peer (the RFC's drop: the peer receives nothing, and it is
// counted as no_permission), and never before the permission's lifetime. How soon after the
// expiry is logged, not asserted (timing goals belong in benchmarks); the bound below only
// keeps a broken mirror from hanging the test.
func TestKernelFastPathPermissionExpiry(t *testing.T) {
	const life = 2 * time.Second
	k := newKernelTopoWith(t, kernelFamilies[0], DataPathOffload, life)
	start := time.Now() // the permission is made during warm, after this
	k.warm(t, true)
	warmed := time.Now()
	if err := k.round([]byte("relayed")); err != nil {
		t.Fatal(err)
	}
	// The permission was installed between start and warmed and lives life (the client
	// refreshes only after minutes).
	for i := 0; ; i++ {
		before := k.rel.stats(t)
		sent := time.Now()
		msg := []byte(fmt.Sprintf("probe %d", i))
		if _, err := k.relayed.WriteTo(msg, k.peerAddr); err != nil {
			t.Fatal(err)
		}
		echoed, err := k.awaitEcho(msg, 200*time.Millisecond)
		if echoed {
			if sent.After(warmed.Add(life + 10*time.Second)) {
				t.Fatalf("%v after the permission's expiry, a packet was still relayed", sent.Sub(warmed.Add(life)).Round(time.Millisecond))
			}
			continue
		}
		after := k.rel.stats(t)
		if after.Kernel[metrics.ClientToPeer].Packets != before.Kernel[metrics.ClientToPeer].Packets {
			// The peer got the probe. Its echo is late (a loaded machine), or the permission
			// expired between the two legs and the echo was dropped, counted as no_permission.
			echoed, err2 := k.awaitEcho(msg, 5*time.Second)
			if echoed {
				continue
			}
			after = k.rel.stats(t)
			if after.Drops[metrics.DropNoPermission] <= before.Drops[metrics.DropNoPermission] {
				t.Fatalf("the kernel relayed the probe, but no echo came back and none was dropped: %v", err2)
			}
		}
		if after.Drops[metrics.DropNoPermission] <= before.Drops[metrics.DropNoPermission] {
			t.Fatalf("probe not echoed and not counted as no_permission: %v", err)
		}
		if sent.Before(start.Add(life)) {
			t.Fatalf("dropped %v after the start, before the permission could expire", sent.Sub(start))
		}
		t.Logf("dropped from %v after the permission's latest expiry", sent.Sub(warmed.Add(life)).Round(time.Millisecond))
		return
	}
}

// BenchmarkKernelFastPath compares round trips client → relay → peer → relay → client through
// the kernel fast path and through the user-space loop, in the same two-namespace topology:
// ns/op is one round trip (two relayed packets), relay-cpu-ns/op the relay process's own CPU
// time per round trip (softirq work is charged to whichever process was interrupted, so it
// under-counts the kernel path: the machine-wide figure is make bench-relay's).
func BenchmarkKernelFastPath(b *testing.B) {
	for _, dp := range []DataPath{DataPathOffload, DataPathIOUring} {
		b.Run(string(dp), func(b *testing.B) {
			k := newKernelTopo(b, kernelFamilies[0], dp)
			k.warm(b, dp == DataPathOffload)
			msg := bytes.Repeat([]byte{7}, 160)
			cpu0 := procCPU(b, k.rel.cmd.Process.Pid)
			b.ReportAllocs()
			b.SetBytes(int64(2 * len(msg)))
			b.ResetTimer()
			for b.Loop() {
				if err := k.round(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(procCPU(b, k.rel.cmd.Process.Pid)-cpu0)/float64(b.N), "relay-cpu-ns/op")
			st := k.rel.stats(b)
			b.ReportMetric(float64(st.Kernel[metrics.ClientToPeer].Packets)/float64(max(1, st.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets)), "kernel-share")
		})
	}
}

// procCPU returns the user and system CPU time of process pid and its threads, in ns.
func procCPU(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) * int64(time.Second) / 100 // USER_HZ
}

// startKernelRelay runs TestKernelRelayChild inside ns and waits until it serves.
func startKernelRelay(t testing.TB, ns *nstest.NS, spec string) *kernelRelay {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, os.Args[0], "-test.run=^TestKernelRelayChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), kfastChildEnv+"="+spec)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &kernelRelay{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		if r.killed {
			return
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("relay process: %v", err)
		}
	})
	r.out.Buffer(make([]byte, 64<<10), 1<<20)
	if !r.out.Scan() || r.out.Text() != "ready" {
		t.Fatalf("relay process did not start: %q %v", r.out.Text(), r.out.Err())
	}
	return r
}

// TestKernelAutoOnVeth: data path auto on a veth whose far end has no XDP program (the relay
// cannot see the far end): the relay attaches the tc variant, which needs none, and relays
// every channel packet in the kernel, byte for byte, user space none. Native XDP there would
// lose every packet, and the round trips would fail.
func TestKernelAutoOnVeth(t *testing.T) {
	for _, f := range kernelFamilies[:2] {
		t.Run(f.name, func(t *testing.T) {
			k := newKernelTopoAttach(t, f, DataPathAuto, OffloadAttachAuto, false)
			if !k.tcx(t, "v0") {
				t.Fatal("data path auto attached no tc program to the veth")
			}
			for _, ns := range []*nstest.NS{k.r, k.c} {
				if out := ns.IP("link show"); strings.Contains(out, "xdp") {
					t.Fatalf("an XDP program is attached in %s:\n%s", ns.Name, out)
				}
			}
			k.warm(t, true)
			k.relayInKernel(t, 200)
		})
	}
}

// awaitEcho reads the client's relayed connection for up to d until msg comes back (what
// else arrives, a late echo of an earlier probe, is skipped); false, with the read's error,
// if it does not.
func (k *kernelTopo) awaitEcho(msg []byte, d time.Duration) (bool, error) {
	k.relayed.SetReadDeadline(time.Now().Add(d))
	for {
		n, _, err := k.relayed.ReadFrom(k.buf)
		if err != nil {
			return false, err
		}
		if bytes.Equal(k.buf[:n], msg) {
			return true, nil
		}
	}
}

// TestKernelAutoOnLoopback: data path auto, as offload, relays channel data on loopback in the
// kernel (the tc variant on lo's tcx ingress), here on the lo of a namespace the test makes:
// the kernel's counters go up by exactly the packets sent, user space's by none, and a
// killed relay leaves nothing attached.
func TestKernelAutoOnLoopback(t *testing.T) {
	for _, f := range loopFamilies {
		t.Run(f.name, func(t *testing.T) {
			k := newKernelTopo(t, f, DataPathAuto)
			if !k.attached(t, f) {
				t.Fatal("data path auto attached nothing to lo")
			}
			k.warm(t, true)
			k.relayInKernel(t, 200)
			k.rel.kill(t)
			if k.attached(t, f) {
				t.Fatal("program left attached to lo after the relay was killed")
			}
		})
	}
}

// TestKernelAutoTwoRelaysOnLoopback: two relays on data path auto share one lo. Each one's tc
// program leaves what it does not know to the next (TCX_NEXT), so both relay their own
// channels in the kernel, and when one exits the other's program stays and still relays.
func TestKernelAutoTwoRelaysOnLoopback(t *testing.T) {
	f := loopFamilies[0]
	a := newKernelTopo(t, f, DataPathAuto)
	b := newKernelTopoIn(t, f, DataPathAuto, 0, a.r, 1, OffloadAttachAuto, true)
	var q *link.QueryResult
	var err error
	a.r.Do(func() {
		q, err = link.QueryPrograms(link.QueryOptions{Target: a.r.Ifindex("lo"), Attach: ebpf.AttachTCXIngress})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Programs) != 2 {
		t.Fatalf("%d programs on lo's tcx ingress, want the two relays'", len(q.Programs))
	}
	for _, k := range []*kernelTopo{a, b} {
		k.warm(t, true)
	}
	for _, k := range []*kernelTopo{a, b} {
		k.relayInKernel(t, 50)
	}
	a.rel.kill(t)
	if !b.attached(t, f) {
		t.Fatal("the second relay's program went with the first relay")
	}
	b.relayInKernel(t, 50)
}
