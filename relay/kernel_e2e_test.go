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
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
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
	parts := strings.Fields(spec)
	lis, err1 := netip.ParseAddrPort(parts[0])
	allow, err2 := netip.ParsePrefix(parts[len(parts)-1])
	if err := errors.Join(err1, err2); err != nil {
		fmt.Println("bad spec:", err)
		os.Exit(2)
	}
	s, err := New(Config{
		Listeners: []ListenerConfig{{Network: UDP, Addr: lis}},
		RelayIPs:  []netip.Addr{lis.Addr()},
		MinPort:   21000, MaxPort: 21099,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: testSecret})}),
		Peers:     PeerPolicy{Allow: []netip.Prefix{allow}},
		Workers:   1,
		DataPath:  DataPathOffload,
		Logger:    testLogger(t),
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
func (r *kernelRelay) kill(t *testing.T) {
	t.Helper()
	r.killed = true
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = r.cmd.Wait()
}

func (r *kernelRelay) stats(t *testing.T) metrics.Snapshot {
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

func TestKernelFastPath(t *testing.T) {
	if why := nstest.Usable(); why != "" {
		t.Skipf("network namespaces unavailable: %s", why)
	}
	pass, err := kfast.New(kfast.Config{Slots: 1})
	if errors.Is(err, kfast.ErrUnavailable) {
		t.Skipf("BPF unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	for _, f := range []struct {
		name, relay, client, peer, prefix, network string
		bits                                       int
	}{
		{"ipv4", "10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.0/24", "udp4", 24},
		{"ipv6", "fd09::1", "fd09::2", "fd09::3", "fd09::/64", "udp6", 64},
	} {
		t.Run(f.name, func(t *testing.T) {
			r := nstest.New(t, "kfer")
			c := nstest.New(t, "kfec")
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
			c.TxChecksumOff("v1")
			c.Do(func() { _, err = pass.AttachPass(c.Ifindex("v1"), kfast.ModeNative) })
			if err != nil {
				t.Fatal(err)
			}
			defer c.Do(func() { pass.Detach(c.Ifindex("v1")) })

			lis := netip.AddrPortFrom(netip.MustParseAddr(f.relay), 3478)
			rel := startKernelRelay(t, r, lis.String()+" "+f.prefix)

			var pc, peer net.PacketConn
			c.Do(func() {
				if pc, err = net.ListenPacket(f.network, net.JoinHostPort(f.client, "0")); err != nil {
					return
				}
				peer, err = net.ListenPacket(f.network, net.JoinHostPort(f.peer, "40001"))
			})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
			cl, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: lis.String(), TURNServerAddr: lis.String(),
				Conn: pc, Username: username, Password: password, Realm: "avedge",
			})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			defer cl.Close()
			if err := cl.Listen(); err != nil {
				t.Fatal(err)
			}
			relayed, err := cl.Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			defer relayed.Close()

			echoed := make(chan struct{})
			go func() { // the peer echoes until it is closed
				defer close(echoed)
				buf := make([]byte, 2048)
				for {
					n, from, err := peer.ReadFrom(buf)
					if err != nil {
						return
					}
					peer.WriteTo(buf[:n], from)
				}
			}()
			defer func() { peer.Close(); <-echoed }()

			peerAddr := peer.LocalAddr()
			buf := make([]byte, 2048)
			warmUp := []byte("warm-up")
			round := func(msg []byte) error {
				if _, err := relayed.WriteTo(msg, peerAddr); err != nil {
					return err
				}
				// Long enough for neighbour discovery: a round that gave up would leave an
				// echo in flight, to be counted in the measured window.
				relayed.SetReadDeadline(time.Now().Add(5 * time.Second))
				for {
					n, from, err := relayed.ReadFrom(buf)
					if err != nil {
						return err
					}
					if bytes.Equal(buf[:n], warmUp) && !bytes.Equal(msg, warmUp) {
						continue // a late echo of the warm-up
					}
					if from.String() != peerAddr.String() || !bytes.Equal(buf[:n], msg) {
						return fmt.Errorf("echo of %d bytes from %v, want %d from %v", n, from, len(msg), peerAddr)
					}
					return nil
				}
			}
			// Until the client's channel is bound (pion binds it in the background) and the
			// relay's kernel knows both neighbours, packets take the user-space path.
			for i := 0; ; i++ {
				err := round(warmUp)
				st := rel.stats(t)
				if err == nil && st.Kernel[metrics.ClientToPeer].Packets > 0 && st.Kernel[metrics.PeerToClient].Packets > 0 {
					break
				}
				if i == 20 {
					t.Fatalf("nothing relayed in the kernel after %d round trips (last: %v): %+v, drops %v", i, err, st.Traffic, st.Drops)
				}
			}

			before := rel.stats(t)
			const n = 200
			var bytesSent uint64
			for i := range n {
				msg := bytes.Repeat([]byte{byte(i)}, 1+(i*37)%1200)
				bytesSent += uint64(len(msg))
				if err := round(msg); err != nil {
					t.Fatalf("round trip %d: %v", i, err)
				}
			}
			after := rel.stats(t)
			for d := range metrics.NumDirections {
				k := after.Kernel[d].Packets - before.Kernel[d].Packets
				kb := after.Kernel[d].Bytes - before.Kernel[d].Bytes
				all := after.Traffic[d][metrics.PathChannel].Packets - before.Traffic[d][metrics.PathChannel].Packets
				allb := after.Traffic[d][metrics.PathChannel].Bytes - before.Traffic[d][metrics.PathChannel].Bytes
				if k != n || kb != bytesSent {
					t.Errorf("%v: kernel relayed %d packets, %d bytes; want %d, %d", d, k, kb, n, bytesSent)
				}
				if all != k || allb != kb {
					t.Errorf("%v: channel traffic +%d packets, +%d bytes, but the kernel relayed %d, %d: user space relayed some", d, all, allb, k, kb)
				}
			}

			// A crash leaves nothing attached (the links die with the process's file
			// descriptors; nothing is pinned), and a restarted relay attaches again.
			rel.kill(t)
			if out := r.IP("link show dev v0"); strings.Contains(out, "xdp") {
				t.Fatalf("XDP program left on v0 after the relay was killed:\n%s", out)
			}
			again := startKernelRelay(t, r, lis.String()+" "+f.prefix)
			if out := r.IP("link show dev v0"); !strings.Contains(out, "xdp") {
				t.Fatalf("restarted relay attached nothing to v0:\n%s", out)
			}
			_ = again
		})
	}
}

// startKernelRelay runs TestKernelRelayChild inside ns and waits until it serves.
func startKernelRelay(t *testing.T, ns *nstest.NS, spec string) *kernelRelay {
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
