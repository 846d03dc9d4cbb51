//go:build linux

package relay

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// Interop with coturn's test client, turnutils_uclient: it allocates, installs permissions,
// binds channels (unless -s asks for Send indications), sends -n messages of -l bytes per
// client to a UDP echo peer (coturn's turnutils_peer) and counts what comes back.

// coturnTool returns the path of a coturn utility, or skips the test when it is missing
// (fails instead when AVEDGE_REQUIRE_INTEROP=1, as in CI images that ship coturn).
func coturnTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("AVEDGE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s not on PATH and AVEDGE_REQUIRE_INTEROP=1: %v", name, err)
		}
		t.Skipf("%s not on PATH (install coturn to run the interop tests): %v", name, err)
	}
	return p
}

// freeUDPPortPair returns a port p on 127.0.0.1 such that p and p+1 were free a moment ago:
// turnutils_peer listens on both, and turnutils_uclient sends to both.
func freeUDPPortPair(t *testing.T) int {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
		c.Close()
		if err == nil {
			c2.Close()
			return port
		}
	}
	t.Fatal("no pair of free UDP ports on 127.0.0.1")
	return 0
}

// startCoturnPeer runs turnutils_peer on loopback and returns its port once it answers.
func startCoturnPeer(t *testing.T) int {
	t.Helper()
	bin := coturnTool(t, "turnutils_peer")
	for attempt := 0; attempt < 5; attempt++ {
		port := freeUDPPortPair(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start turnutils_peer: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cancel(); <-exited })
		if echoes(port, exited) {
			return port
		}
		cancel()
	}
	t.Fatal("turnutils_peer did not come up on loopback")
	return 0
}

// echoes probes a UDP echo peer until it answers, it exits, or 3 s pass.
func echoes(port int, exited <-chan struct{}) bool {
	// Unconnected, so that the ICMP port-unreachable of a peer not yet bound does not turn
	// every read into an immediate error.
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false
	}
	defer c.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	buf := make([]byte, 64)
	for i := 0; i < 30; i++ {
		select {
		case <-exited:
			return false
		default:
		}
		_, _ = c.WriteToUDP([]byte("probe"), to)
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := c.ReadFromUDP(buf); err == nil && string(buf[:n]) == "probe" {
			return true
		}
	}
	return false
}

// uclientReport is what turnutils_uclient prints at the end of a run.
type uclientReport struct {
	sent, received, lost int
	found                bool
}

var (
	reSentRecv = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	reLost     = regexp.MustCompile(`Total lost packets (\d+)`)
)

func parseUclient(out string) uclientReport {
	var r uclientReport
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := reSentRecv.FindStringSubmatch(line); m != nil {
			r.sent, _ = strconv.Atoi(m[1])
			r.received, _ = strconv.Atoi(m[2])
		}
		if m := reLost.FindStringSubmatch(line); m != nil {
			r.lost, _ = strconv.Atoi(m[1])
			r.found = true
		}
	}
	return r
}

// uclientRun is one turnutils_uclient run: its output, or why it did not complete.
type uclientRun struct {
	out string
	err error
}

// startUclient runs turnutils_uclient with args in the background, bounded by a timeout,
// and delivers the result on the returned channel.
func startUclient(bin string, args ...string) <-chan uclientRun {
	done := make(chan uclientRun, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after 20s: %w", err)
		}
		if err != nil {
			err = fmt.Errorf("turnutils_uclient %s: %w", strings.Join(args, " "), err)
		}
		done <- uclientRun{out: string(out), err: err}
	}()
	return done
}

// uclient's channel numbers are drawn at random, and a draw may repeat. Before it sends data,
// each uclient client binds a channel to the second echo port (peer port + 1), binds it
// again, then draws a fresh number at random in 0x4000–0x7FFF and binds it to the peer port
// (coturn's start_connection in startuclient.c binds more than it needs on purpose, to test
// the server). One time in 16384 the second draw equals the first, and the relay must refuse
// the bind: RFC 8656 §12.2, "The channel number is not currently bound to a different
// transport address (same transport address is OK) ... If any of these tests fail, the server
// replies with a 400 (Bad Request) error." uclient then exits with "channel bind: error 400".
// With four runs that bind channels, two clients each, about one test run in 2048 fails so,
// whatever the relay does. Such a run is run again, but only when the relay's own log shows
// that very refusal (lostToChannelDraw); any other 400 still fails the test.

// warnLog records the relay's Warn-level log messages; pion's warnings arrive there
// (pionLeveled). It passes every record on to next as well.
type warnLog struct {
	next slog.Handler
	rec  *warnRecords
}

type warnRecords struct {
	mu   sync.Mutex
	msgs []string // Guarded by mu.
}

// take returns the messages recorded since the last take.
func (w *warnRecords) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

func (h warnLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h warnLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.rec.mu.Lock()
		h.rec.msgs = append(h.rec.msgs, r.Message)
		h.rec.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h warnLog) WithAttrs(as []slog.Attr) slog.Handler {
	return warnLog{next: h.next.WithAttrs(as), rec: h.rec}
}

func (h warnLog) WithGroup(name string) slog.Handler {
	return warnLog{next: h.next.WithGroup(name), rec: h.rec}
}

// recordWarnings makes c's relay log through a warnLog and returns its records.
func recordWarnings(t testing.TB, c *Config) *warnRecords {
	rec := &warnRecords{}
	c.Logger = slog.New(warnLog{next: testLogger(t).Handler(), rec: rec})
	return rec
}

// reChannelTaken is pion's warning for a ChannelBind whose channel number is bound to another
// peer of the allocation (pion/turn v5 internal/server/turn.go, handleChannelBindRequest).
var reChannelTaken = regexp.MustCompile(`^ChannelBind rejected: channel (\d+) already bound to peer (\S+), attempted peer (\S+)$`)

// lostToChannelDraw reports whether a uclient run failed only because uclient drew, for the
// peer port, the channel number it had bound to peer port + 1: uclient says "channel bind:
// error 400" and the relay's warnings include that refusal, for those two addresses of the
// echo peer on 127.0.0.1.
func lostToChannelDraw(res uclientRun, warnings []string, peerPort int) bool {
	if res.err == nil || !strings.Contains(res.out, "channel bind: error 400") {
		return false
	}
	second := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(peerPort+1)).String()
	first := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(peerPort)).String()
	for _, w := range warnings {
		if m := reChannelTaken.FindStringSubmatch(w); m != nil && m[2] == second && m[3] == first {
			return true
		}
	}
	return false
}

// TestInteropCoturnUclient runs coturn's client against avedge over UDP and TCP, with
// channels (uclient's default) and with Send/Data indications (-s), with a long-term
// credential and with the TURN REST secret itself (-W, as coturn's use-auth-secret does).
// The client paces 50 messages per session (-z 5 ms); the assertion is correctness: nothing
// lost, and the relay's counters show every packet once, on the path the client chose.
func TestInteropCoturnUclient(t *testing.T) {
	bin := coturnTool(t, "turnutils_uclient")
	peerPort := startCoturnPeer(t)
	peerDrops0 := udpSocketDrops(peerPort, peerPort+1)
	// The kernel's drops at turnutils_peer's full sockets since the peer started, for every run.
	peerDrops := func() uint64 { return udpSocketDrops(peerPort, peerPort+1) - peerDrops0 }
	const clients, msgs, length = 2, 50, 120
	username, password := auth.MintREST(testSecret, "coturn", time.Now().Add(time.Hour))
	type run struct {
		name    string
		network Network
		flags   []string
		path    metrics.Path

		srv  *Server
		warn *warnRecords
		args []string
		done <-chan uclientRun
	}
	runs := []*run{
		{name: "udp channels", network: UDP, path: metrics.PathChannel},
		{name: "udp indications", network: UDP, flags: []string{"-s"}, path: metrics.PathIndication},
		{name: "tcp channels", network: TCP, flags: []string{"-t"}, path: metrics.PathChannel},
		{name: "tcp indications", network: TCP, flags: []string{"-t", "-s"}, path: metrics.PathIndication},
		{name: "udp rest secret", network: UDP, flags: []string{"-W", string(testSecret), "-u", "coturn"}, path: metrics.PathChannel},
		{name: "tcp rest secret", network: TCP, flags: []string{"-t", "-W", string(testSecret), "-u", "coturn"}, path: metrics.PathChannel},
	}
	// Each uclient run spends most of its ~3 s waiting on its own timers, so all of them
	// run at once, each against its own relay; the subtests then check each one.
	for i, r := range runs {
		// A range of its own per relay: the runs allocate at the same time.
		base := uint16(21000 + 1000*i)
		r.srv = startServer(t, func(c *Config) {
			c.MinPort, c.MaxPort = base, base+999
			r.warn = recordWarnings(t, c)
		})
		_, port, _ := net.SplitHostPort(r.srv.addrOf(r.network))
		args := append([]string{}, r.flags...)
		if !slices.Contains(r.flags, "-W") {
			args = append(args, "-u", username, "-w", password)
		}
		args = append(args,
			"-c", // no RTCP allocations
			"-n", strconv.Itoa(msgs), "-l", strconv.Itoa(length), "-m", strconv.Itoa(clients),
			"-z", "5",
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
			"-p", port, "127.0.0.1")
		r.args = args
		r.done = startUclient(bin, args...)
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			res := <-r.done // bounded by startUclient's timeout
			// A refused bind relays nothing (uclient sends data only once every client is set
			// up), so the counters checked below still count one complete run.
			for attempt := 2; attempt <= 3 && lostToChannelDraw(res, r.warn.take(), peerPort); attempt++ {
				t.Logf("turnutils_uclient drew a channel number it had bound to the other peer, and the relay refused it as it must (400); attempt %d", attempt)
				res = <-startUclient(bin, r.args...)
			}
			// A run that lost packets where the relay had no part in it (lostOutsideRelay) is
			// run again, at most twice; the counters are then those of the last run.
			var base metrics.Snapshot
			for attempt := 2; attempt <= 3 && res.err == nil; attempt++ {
				st := r.srv.Stats()
				why, ok := lostOutsideRelay(parseUclient(res.out), sub(st, base), r.path, peerDrops())
				if !ok {
					break
				}
				t.Logf("turnutils_uclient lost packets outside the relay (%s); attempt %d", why, attempt)
				base = st
				res = <-startUclient(bin, r.args...)
			}
			if res.err != nil {
				t.Fatalf("%v; output:\n%s", res.err, res.out)
			}
			rep := parseUclient(res.out)
			if !rep.found {
				t.Fatalf("no \"Total lost packets\" line in turnutils_uclient output:\n%s", res.out)
			}
			st := sub(r.srv.Stats(), base)
			if rep.lost != 0 || rep.sent != clients*msgs || rep.received != clients*msgs {
				t.Fatalf("turnutils_uclient: sent %d, received %d, lost %d; want %d, %d, 0; relay: traffic %v, drops %v; "+
					"kernel drops at turnutils_peer's sockets %d\n%s",
					rep.sent, rep.received, rep.lost, clients*msgs, clients*msgs, st.Traffic, st.Drops, peerDrops(), res.out)
			}
			other := metrics.PathChannel + metrics.PathIndication - r.path
			for dir := metrics.ClientToPeer; dir <= metrics.PeerToClient; dir++ {
				if got := st.Traffic[dir][r.path]; got.Packets != clients*msgs || got.Bytes != clients*msgs*length {
					t.Errorf("%s on path %d: %+v, want %d packets, %d bytes", dir, r.path, got, clients*msgs, clients*msgs*length)
				}
				if got := st.Traffic[dir][other]; got != (metrics.Counter{}) {
					t.Errorf("%s on path %d: %+v, want nothing", dir, other, got)
				}
			}
			if t.Failed() {
				t.Logf("drops %v; turnutils_uclient output:\n%s", st.Drops, res.out)
			}
		})
	}
}

// lostOutsideRelay reports whether a turnutils_uclient run that lost packets lost them where
// the relay had no part in it, and says where. On a loaded machine turnutils_peer (one
// process shared by every run) or uclient itself may not get the CPU to read its socket
// before the kernel drops at the full buffer, or uclient may stop waiting (coturn's
// STOPPING_TIME after its last send) before late echoes arrive. The relay had no part when it
// dropped nothing (st, the relay's counters for this run), relayed to the peer every message
// uclient sent, and the shortfall of echoes back from the peer is no more than the kernel
// dropped at turnutils_peer's sockets (peerDrops, since the peer started: an upper bound for
// one run). What the relay relayed back and uclient did not count was lost after the relay.
// A run that lost nothing, or failed otherwise, is not for this rule.
func lostOutsideRelay(rep uclientReport, st metrics.Snapshot, path metrics.Path, peerDrops uint64) (string, bool) {
	if !rep.found || rep.lost == 0 {
		return "", false
	}
	for _, n := range st.Drops {
		if n != 0 {
			return "", false
		}
	}
	toPeer, fromPeer := st.Traffic[metrics.ClientToPeer][path].Packets, st.Traffic[metrics.PeerToClient][path].Packets
	if toPeer != uint64(rep.sent) || fromPeer > toPeer || toPeer-fromPeer > peerDrops {
		return "", false
	}
	return fmt.Sprintf("uclient sent %d, received %d; the relay relayed all %d to the peer and dropped none, "+
		"%d echoes did not come back from the peer (kernel drops at turnutils_peer's sockets: %d), "+
		"%d relayed back were not counted by uclient", rep.sent, rep.received, toPeer, toPeer-fromPeer, peerDrops,
		fromPeer-min(fromPeer, uint64(rep.received))), true
}

// sub returns the relay's counters a less those of b (traffic and drops).
func sub(a, b metrics.Snapshot) metrics.Snapshot {
	d := metrics.Snapshot{Drops: map[string]uint64{}}
	for dir := range a.Traffic {
		for p := range a.Traffic[dir] {
			d.Traffic[dir][p] = metrics.Counter{
				Packets: a.Traffic[dir][p].Packets - b.Traffic[dir][p].Packets,
				Bytes:   a.Traffic[dir][p].Bytes - b.Traffic[dir][p].Bytes,
			}
		}
	}
	for k, v := range a.Drops {
		if v != b.Drops[k] {
			d.Drops[k] = v - b.Drops[k]
		}
	}
	return d
}

// udpSocketDrops sums the kernel's drop counters (the last column of /proc/net/udp) of the
// UDP sockets bound to 127.0.0.1 on the given ports; 0 if unreadable.
func udpSocketDrops(ports ...int) uint64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	want := map[string]bool{}
	for _, p := range ports {
		want[fmt.Sprintf("0100007F:%04X", p)] = true
	}
	var sum uint64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 13 || !want[f[1]] {
			continue
		}
		v, _ := strconv.ParseUint(f[len(f)-1], 10, 64)
		sum += v
	}
	return sum
}

// The parser is checked on a captured run of coturn 4.6.1's turnutils_uclient (2 clients,
// -n 50 -l 120) and on outputs that must not read as success.
func TestParseUclient(t *testing.T) {
	captured, err := os.ReadFile("../testdata/coturn/uclient_udp_channels.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		out  string
		want uclientReport
	}{
		{name: "captured run", out: string(captured), want: uclientReport{sent: 100, received: 100, lost: 0, found: true}},
		{name: "losses", out: "1: : start_mclient: tot_send_msgs=100, tot_recv_msgs=97\n1: : Total lost packets 3 (3.000000%), total send dropped 0 (0.000000%)\n",
			want: uclientReport{sent: 100, received: 97, lost: 3, found: true}},
		{name: "no summary", out: "0: : Cannot complete Allocation\n", want: uclientReport{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseUclient(tc.out); got != tc.want {
				t.Errorf("parseUclient = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// lostOutsideRelay excuses a lossy run only when the relay's counters account for every
// message uclient sent and the kernel's drops at the peer account for the missing echoes.
func TestLostOutsideRelay(t *testing.T) {
	counters := func(toPeer, fromPeer uint64, drops map[string]uint64) metrics.Snapshot {
		st := metrics.Snapshot{Drops: drops}
		st.Traffic[metrics.ClientToPeer][metrics.PathChannel].Packets = toPeer
		st.Traffic[metrics.PeerToClient][metrics.PathChannel].Packets = fromPeer
		return st
	}
	lossy := uclientReport{sent: 100, received: 92, lost: 8, found: true}
	for _, tc := range []struct {
		name      string
		rep       uclientReport
		st        metrics.Snapshot
		peerDrops uint64
		want      bool
	}{
		{name: "dropped at the peer", rep: lossy, st: counters(100, 92, nil), peerDrops: 8, want: true},
		{name: "lost after the relay", rep: lossy, st: counters(100, 100, nil), want: true},
		{name: "nothing lost", rep: uclientReport{sent: 100, received: 100, found: true}, st: counters(100, 100, nil)},
		{name: "no summary", rep: uclientReport{}, st: counters(100, 100, nil)},
		{name: "relay dropped some", rep: lossy, st: counters(100, 100, map[string]uint64{"queue_full": 8})},
		{name: "relay did not relay all to the peer", rep: lossy, st: counters(92, 92, nil), peerDrops: 8},
		{name: "more missing from the peer than it dropped", rep: lossy, st: counters(100, 92, nil), peerDrops: 7},
		{name: "counted on the other path", rep: lossy, st: func() metrics.Snapshot {
			st := metrics.Snapshot{}
			st.Traffic[metrics.ClientToPeer][metrics.PathIndication].Packets = 100
			return st
		}(), peerDrops: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why, got := lostOutsideRelay(tc.rep, tc.st, metrics.PathChannel, tc.peerDrops)
			if got != tc.want {
				t.Errorf("lostOutsideRelay = %v (%s), want %v", got, why, tc.want)
			}
		})
	}
}

// udpSocketDrops reads the kernel's count for a socket that is not read: every datagram sent
// to it is either queued or counted as dropped.
func TestUDPSocketDrops(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := rx.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	port := rx.LocalAddr().(*net.UDPAddr).Port
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	d0 := udpSocketDrops(port)
	const sent = 200
	for i := 0; i < sent; i++ {
		if _, err := tx.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	read, deadline := 0, time.Now().Add(5*time.Second) // bounded
	for read+int(udpSocketDrops(port)-d0) < sent && time.Now().Before(deadline) {
		_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := rx.Read(buf); err == nil {
			read++
		}
	}
	if drops := udpSocketDrops(port) - d0; drops == 0 || read+int(drops) != sent {
		t.Fatalf("sent %d: read %d, drops %d; want some drops and read+drops = sent", sent, read, drops)
	}
}

// lostToChannelDraw is checked against the relay itself: raw requests replay uclient's binds
// with its second draw repeating the first (the one refusal it must recognise) and with
// other refused binds, which must still fail the interop test. The uclient side is uclient's
// captured output for that draw (coturn 4.6.1, its random source made to repeat).
func TestLostToChannelDraw(t *testing.T) {
	captured, err := os.ReadFile("../testdata/coturn/uclient_channel_taken.txt")
	if err != nil {
		t.Fatal(err)
	}
	refused := uclientRun{out: string(captured), err: fmt.Errorf("exit status 255")}
	// A ChannelBind only names its peer: nothing needs to listen on these ports.
	const peerPort = 40000
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	first, second, third := netip.AddrPortFrom(lo, peerPort), netip.AddrPortFrom(lo, peerPort+1), netip.AddrPortFrom(lo, peerPort+2)
	type bind struct {
		num  uint16
		peer netip.AddrPort
	}
	for _, tc := range []struct {
		name  string
		binds []bind // every bind but the last succeeds; the last is refused with 400
		res   uclientRun
		want  bool
	}{
		{name: "second draw repeats the first", binds: []bind{{0x5a5a, second}, {0x5a5a, second}, {0x5a5a, first}}, res: refused, want: true},
		{name: "peer bound to another number", binds: []bind{{0x5a5a, second}, {0x5a5b, second}}, res: refused},
		{name: "number bound to a third address", binds: []bind{{0x5a5a, third}, {0x5a5a, first}}, res: refused},
		{name: "same refusal, uclient failed otherwise", binds: []bind{{0x5a5a, second}, {0x5a5a, first}},
			res: uclientRun{out: "0: : Cannot complete Allocation\n", err: fmt.Errorf("exit status 255")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warn *warnRecords
			s := startServer(t, func(c *Config) { warn = recordWarnings(t, c) })
			c := newRawAllocation(t, s, "coturn")
			for i, b := range tc.binds {
				err := c.channelBind(b.num, b.peer)
				if last := i == len(tc.binds)-1; !last && err != nil {
					t.Fatalf("ChannelBind %#x to %s: %v", b.num, b.peer, err)
				} else if last && errorCode(err) != stun.CodeBadRequest {
					t.Fatalf("ChannelBind %#x to %s: %v, want 400", b.num, b.peer, err)
				}
			}
			w := warn.take()
			if got := lostToChannelDraw(tc.res, w, peerPort); got != tc.want {
				t.Errorf("lostToChannelDraw = %v, want %v; relay warnings: %q", got, tc.want, w)
			}
		})
	}
}
