//go:build linux

package dataplane

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
)

// forwardRig is one worker, not running, wired by hand to real loopback sockets: a listener
// socket, a relay socket and a peer, with one allocation and one channel in the fast-path
// table. Tests drive the worker's receive handlers directly.
type forwardRig struct {
	w      *Worker
	lis    *loopSock // the worker's listener socket
	rs     *loopSock // the relay socket, as the worker reads it
	rc     *Relay
	rcAddr netip.AddrPort // the relay socket's address
	a      *Alloc
	client netip.AddrPort
	peer   *net.UDPConn
	cl     *net.UDPConn
}

func newForwardRig(t testing.TB) *forwardRig {
	t.Helper()
	w, err := NewWorker(0, Config{Table: NewTable(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lfd, err := sock.OpenUDP(netip.MustParseAddrPort("127.0.0.1:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddListener(lfd, NewListener(0, 1, 8)); err != nil {
		t.Fatal(err)
	}
	rfd, err := sock.OpenUDP(netip.MustParseAddrPort("127.0.0.1:0"), false)
	if err != nil {
		t.Fatal(err)
	}
	rap, _ := sock.LocalAddrPort(rfd)
	rc := NewRelay(rfd, 8, 0)
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	client := cl.LocalAddr().(*net.UDPAddr).AddrPort()
	peerAP := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	a := w.fast.NewAlloc(rc)
	a.Key, a.UDP = Key{Lis: 0, Client: client}, true
	a.ClientRaw.Set(client)
	ch := &Chan{Num: 0x4001, Peer: peerAP}
	ch.Raw.Set(peerAP)
	w.fast.Permit(a, peerAP.Addr())
	w.fast.Bind(a, ch)
	w.fast.Insert(a)
	rc.Alloc.Store(a)
	t.Cleanup(func() {
		w.Close()
		unix.Close(rfd)
		peer.Close()
		cl.Close()
	})
	return &forwardRig{w: w, lis: w.lisSocks[0], rs: &loopSock{fd: rfd, kind: kindRelay, rc: rc}, rc: rc, rcAddr: rap,
		a: a, client: client, peer: peer, cl: cl}
}

// channelData frames payload for channel num in the worker's ring slot i.
func (r *forwardRig) put(i int, b []byte) int {
	return copy(r.w.bufs[i][headroom:], b)
}

func frame(num uint16, payload []byte) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint16(b[0:2], num)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(payload)))
	copy(b[4:], payload)
	return b
}

func TestForwardClientToPeerChannel(t *testing.T) {
	r := newForwardRig(t)
	payload := []byte("hello peer, byte exact")
	n := r.put(0, frame(0x4001, payload))
	r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
	r.w.flush()
	buf := make([]byte, 2048)
	m, from, err := r.peer.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:m]) != string(payload) {
		t.Fatalf("peer got %q, want %q", buf[:m], payload)
	}
	if from.AddrPort() != r.rcAddr {
		t.Fatalf("peer saw source %v, want relay address %v", from, r.rcAddr)
	}
	if got := r.w.stats.traffic[metrics.ClientToPeer][metrics.PathChannel].bytes.Load(); got != uint64(len(payload)) {
		t.Fatalf("counted %d bytes, want %d", got, len(payload))
	}
}

func TestForwardPeerToClientChannel(t *testing.T) {
	r := newForwardRig(t)
	payload := []byte("hello client")
	n := r.put(0, payload)
	r.w.handle(r.rs, &r.w.bufs[0], n, r.peer.LocalAddr().(*net.UDPAddr).AddrPort())
	r.w.flush()
	buf := make([]byte, 2048)
	m, _, err := r.cl.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := frame(0x4001, payload)
	if string(buf[:m]) != string(want) {
		t.Fatalf("client got % x, want % x", buf[:m], want)
	}
}

func TestForwardDrops(t *testing.T) {
	cases := []struct {
		name   string
		client bool
		data   []byte
		from   func(r *forwardRig) netip.AddrPort
		reason DropReason
	}{
		{name: "unbound channel", client: true, data: frame(0x4002, []byte("x")), reason: DropNoChannel},
		{name: "length past datagram", client: true, data: []byte{0x40, 0x01, 0x00, 0x10, 1, 2}, reason: DropMalformed},
		{name: "neither STUN nor ChannelData", client: true, data: []byte{0xff, 0, 0, 0, 0}, reason: DropMalformed},
		{name: "short STUN", client: true, data: []byte{0, 1, 0, 0}, reason: DropMalformed},
		{name: "unknown client", client: true, data: frame(0x4001, []byte("x")),
			from: func(r *forwardRig) netip.AddrPort { return netip.MustParseAddrPort("127.0.0.1:9") }, reason: DropNoAllocation},
		{name: "peer without permission", data: []byte("x"),
			from: func(r *forwardRig) netip.AddrPort { return netip.MustParseAddrPort("127.0.0.2:9") }, reason: DropNoPermission},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newForwardRig(t)
			from := r.client
			if !tc.client {
				from = r.peer.LocalAddr().(*net.UDPAddr).AddrPort()
			}
			if tc.from != nil {
				from = tc.from(r)
			}
			n := r.put(0, tc.data)
			if tc.client {
				r.w.handle(r.lis, &r.w.bufs[0], n, from)
			} else {
				r.w.handle(r.rs, &r.w.bufs[0], n, from)
			}
			if len(r.w.out) != 0 {
				t.Fatalf("queued %d sends, want none", len(r.w.out))
			}
			if got := r.w.stats.drops[tc.reason].Load(); got != 1 {
				t.Fatalf("drops[%s] = %d, want 1", tc.reason, got)
			}
		})
	}
}

// TestForwardingStepAllocatesNothing fails the build if an allocation creeps into the hot
// loop: classify, look up, queue, count and send, both directions.
func TestForwardingStepAllocatesNothing(t *testing.T) {
	r := newForwardRig(t)
	data := frame(0x4001, make([]byte, 160))
	peerAP := r.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	allocs := testing.AllocsPerRun(1000, func() {
		n := r.put(0, data)
		r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
		n = r.put(1, data[4:])
		r.w.handle(r.rs, &r.w.bufs[1], n, peerAP)
		r.w.flush()
	})
	if allocs != 0 {
		t.Fatalf("forwarding step allocates %.1f times per packet pair, want 0", allocs)
	}
}

func BenchmarkForwardChannelData(b *testing.B) {
	r := newForwardRig(b)
	data := frame(0x4001, make([]byte, 160))
	b.ReportAllocs()
	b.SetBytes(160)
	for i := 0; i < b.N; i++ {
		n := r.put(0, data)
		r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
		r.w.flush()
	}
}

// BenchmarkLookupOnly is the loop's own work per packet, without the send system call.
func BenchmarkLookupOnly(b *testing.B) {
	r := newForwardRig(b)
	data := frame(0x4001, make([]byte, 160))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		n := r.put(0, data)
		r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
		r.w.out = r.w.out[:0]
	}
}

// BenchmarkLookupOnlyFromPeer is the same for a datagram from the peer on a bound channel.
func BenchmarkLookupOnlyFromPeer(b *testing.B) {
	r := newForwardRig(b)
	data := make([]byte, 160)
	peerAP := r.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		n := r.put(0, data)
		r.w.handle(r.rs, &r.w.bufs[0], n, peerAP)
		r.w.out = r.w.out[:0]
	}
}

// FuzzClassify feeds arbitrary datagrams to both receive handlers: they must never panic,
// and must do exactly one of three things: forward (return a send, and count the traffic),
// hand the datagram to pion (one more on a hand-off queue), or count one drop.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c'}, true)
	f.Add([]byte{0x40, 0x01, 0xff, 0xff}, true)
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, true)
	f.Add([]byte{0x7f, 0xff, 0x00, 0x00}, true)
	f.Add([]byte("payload from a peer"), false)
	f.Add([]byte{}, false)
	r := newForwardRig(f)
	peer := r.peer.LocalAddr().(*net.UDPAddr).AddrPort()
	drops := func() (n uint64) {
		for d := DropReason(0); d < numDropReasons; d++ {
			n += r.w.stats.Drops(d)
		}
		return n
	}
	packets := func() (n uint64) {
		for d := range metrics.NumDirections {
			for p := range metrics.NumPaths {
				n += r.w.stats.Packets(metrics.Direction(d), metrics.Path(p))
			}
		}
		return n
	}
	f.Fuzz(func(t *testing.T, data []byte, client bool) {
		if len(data) > bufSize {
			data = data[:bufSize]
		}
		n := r.put(0, data)
		drops0, packets0, answers0 := drops(), packets(), r.w.stats.BindingAnswers()
		var to *sock.RawAddr
		var sent []byte
		if client {
			_, sent, to = r.w.classify(r.lis, &r.w.bufs[0], n, r.client)
		} else {
			_, sent, to = r.w.classify(r.rs, &r.w.bufs[0], n, peer)
		}
		handedOff := r.lis.lis.Shards[0].Len() + r.rc.Len()
		forwarded := 0
		if to != nil {
			forwarded = 1
			if answered := r.w.stats.BindingAnswers() - answers0; answered == 1 {
				if packets() != packets0 {
					t.Fatalf("counted traffic for the Binding answer to % x", data)
				}
			} else if packets() != packets0+1 {
				t.Fatalf("forwarded % x without counting it", data)
			}
			if len(sent) > max(n, bindingAnswerMax)+headroom {
				t.Fatalf("forwarded %d bytes of a %d-byte datagram", len(sent), n)
			}
		} else if packets() != packets0 {
			t.Fatalf("counted traffic for % x without forwarding it", data)
		}
		dropped := int(drops() - drops0)
		if forwarded+handedOff+dropped != 1 {
			t.Fatalf("datagram % x (from client %v): forwarded %d, handed off %d, dropped %d; want exactly one outcome",
				data, client, forwarded, handedOff, dropped)
		}
		// Empty what was handed to pion so the queues never fill.
		drainQueue(r.lis.lis.Shards[0])
		for r.rc.Len() > 0 {
			p, _ := r.rc.popRing()
			slowPool.Put(p)
		}
	})
}

// TestFlushGSOKeepsDatagrams: a run of same-size datagrams to one destination leaves as one
// UDP GSO send; the receiver must still see every datagram, whole and in order, including a
// shorter one that ends a group and a larger one that starts the next.
func TestFlushGSOKeepsDatagrams(t *testing.T) {
	r := newForwardRig(t)
	ch := r.a.ChanByNum(0x4001)
	var want [][]byte
	sizes := []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 50, 120, 120, 120, 7}
	for i, n := range sizes {
		b := r.w.bufs[i][headroom : headroom+n]
		for k := range b {
			b[k] = byte(i*31 + k)
		}
		want = append(want, append([]byte(nil), b...))
		r.w.queue(r.rc.FD, b, &ch.Raw)
	}
	r.w.flush()
	buf := make([]byte, 2048)
	for i, w := range want {
		_ = r.peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := r.peer.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if string(buf[:n]) != string(w) {
			t.Fatalf("datagram %d: got %d bytes, want %d (% x…)", i, n, len(w), w[:4])
		}
	}
	if r.w.noGSO {
		t.Log("kernel refused UDP GSO; the plain path was used")
	}
	if got := r.w.stats.drops[DropSendError].Load(); got != 0 {
		t.Fatalf("send errors: %d", got)
	}
}

// RFC 8656 §12.4 allows ChannelData with no data; relayed, it is an empty UDP datagram. Two
// of them in one round leave in one sendmmsg (this used to index an empty payload).
func TestForwardEmptyChannelData(t *testing.T) {
	r := newForwardRig(t)
	for i := 0; i < 2; i++ {
		n := r.put(i, frame(0x4001, nil))
		r.w.handle(r.lis, &r.w.bufs[i], n, r.client)
	}
	r.w.flush()
	_ = r.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for i := 0; i < 2; i++ {
		m, from, err := r.peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if m != 0 || from != r.rcAddr {
			t.Fatalf("datagram %d: %d bytes from %v, want an empty one from %v", i, m, from, r.rcAddr)
		}
	}
}

// The hold (Config.HoldMs) counts from the last round that had packets: the runtime's
// preemption ends raw waits every 10-20 ms, and a hold that restarted with each wait would
// never run out, so an idle relay would keep its P (README, "Performance": what that costs).
func TestIdleHoldCountsFromLastPacket(t *testing.T) {
	w := &Worker{}
	for _, tc := range []struct {
		holdMs int
		idle   time.Duration
		min    int
		max    int
	}{
		{holdMs: -1, idle: time.Hour, min: -1, max: -1},
		{holdMs: 0, idle: 0, min: 0, max: 0},
		{holdMs: 100, idle: 150 * time.Millisecond, min: 0, max: 0},
		{holdMs: 1000, idle: 300 * time.Millisecond, min: 1, max: 700},
	} {
		w.holdMs = tc.holdMs
		w.active = time.Now().Add(-tc.idle)
		if got := w.holdFor(); got < tc.min || got > tc.max {
			t.Errorf("hold %d ms, idle %v: holdFor = %d, want %d..%d", tc.holdMs, tc.idle, got, tc.min, tc.max)
		}
	}
}
