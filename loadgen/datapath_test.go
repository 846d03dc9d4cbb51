package loadgen

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// testClient builds a client of mode whose socket is connected to a sink that
// reads nothing back, with its packets framed, outside of Run.
func testClient(tb testing.TB, mode Mode, size int) *client {
	tb.Helper()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sink.Close() })
	_ = sink.SetReadBuffer(socketBuffer)
	conn, err := net.DialUDP("udp4", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	r := &runner{cfg: Config{Mode: mode, Size: size, Rate: 50}, base: time.Now(), stop: make(chan struct{})}
	c := &client{id: 1, r: r, g: &group{hist: newHist()}, conn: conn, pattern: make([]byte, size)}
	fillPayload(c.pattern, c.id)
	c.channel = firstChannel
	c.peer = sink.LocalAddr().(*net.UDPAddr).AddrPort()
	if c.tx, err = c.framePacket(); err != nil {
		tb.Fatal(err)
	}
	c.out = newSendBatch(batchSize, c.tx)
	return c
}

// payloadOf returns the payload inside a frame the way readLoop finds it.
func payloadOf(tb testing.TB, mode Mode, frame []byte) []byte {
	switch mode {
	case ModeDirect:
		return frame
	case ModeIndication:
		// The echo comes back as a Data indication; its DATA has the same layout.
		b := append([]byte(nil), frame...)
		b[1] = byte(typeDataInd)
		p, err := parseDataIndication(b)
		if err != nil {
			tb.Fatal(err)
		}
		return p
	default:
		_, p, err := parseChannelData(frame)
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
}

// The per-packet path must not allocate: stamping and sending, receiving and
// checking a probe, and turning a partner's ping around.
func TestDataPathAllocs(t *testing.T) {
	for _, mode := range []Mode{ModeChannel, ModeIndication, ModeDirect, ModePair} {
		t.Run(string(mode), func(t *testing.T) {
			c := testClient(t, mode, 160)
			if a := testing.AllocsPerRun(200, func() { c.send(c.tx) }); a != 0 {
				t.Errorf("send: %v allocs per packet", a)
			}
			if a := testing.AllocsPerRun(20, func() { c.sendProbes(8) }); a != 0 {
				t.Errorf("sendProbes: %v allocs per batch", a)
			}
			if mode == ModePair {
				// c receives a ping from its partner p and turns it around.
				p := testClient(t, mode, 160)
				p.id = 2
				fillPayload(p.pattern, p.id)
				c.partner, p.partner = p, c
				frame := append([]byte(nil), c.tx...)
				copy(frame[channelDataHeader:], p.pattern)
				a := testing.AllocsPerRun(200, func() {
					frame[channelDataHeader+offKind] = kindPing
					c.onPayload(frame[channelDataHeader:], frame, false)
				})
				if a != 0 || c.corrupt.Load() != 0 || c.pingsIn.Load() == 0 {
					t.Errorf("turnaround: %v allocs, corrupt %d, pings %d", a, c.corrupt.Load(), c.pingsIn.Load())
				}
				c.tx[channelDataHeader+offKind] = kindPong // what comes back to c
			}
			c.send(c.tx)
			echo := payloadOf(t, mode, c.tx)
			before := c.recv.Load()
			if a := testing.AllocsPerRun(200, func() { c.onPayload(echo, c.tx, false) }); a != 0 {
				t.Errorf("receive: %v allocs per packet", a)
			}
			if c.recv.Load() == before || c.corrupt.Load() != 0 {
				t.Errorf("receive: recv %d → %d, corrupt %d", before, c.recv.Load(), c.corrupt.Load())
			}
		})
	}
}

// A client's batches: what one sendmmsg sends arrives byte for byte and in order, through an
// echo peer, and one recvmmsg takes up what came back; receiving and sending a batch
// allocates nothing.
func TestClientBatches(t *testing.T) {
	e, err := newEchoPeer(netipLoopback.Addr())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); e.serve() }()
	defer func() { _ = e.conn.Close(); <-done }()

	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(e.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	setBuffers(c, socketBuffer)
	const each = 40 // less than a batch: one sendmmsg
	out := newSendBatch(each, make([]byte, 100))
	for j := range each {
		out.bufs[j][0] = byte(j)
		out.lens[j] = 50 + j // lengths vary
	}
	if failed := out.send(c, each); failed != 0 {
		t.Fatalf("%d of %d not sent", failed, each)
	}
	in := newRecvBatch(batchSize)
	got := 0
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // a bound, not a wait: fails only if echoes are lost
	for got < each {
		n, err := in.recv(c)
		if err != nil {
			t.Fatalf("%d of %d echoes back: %v", got, each, err)
		}
		for k := range n {
			b := in.bufs[k][:in.lens[k]]
			if int(b[0]) != got || len(b) != 50+got || !bytes.Equal(b[1:], out.bufs[got][1:len(b)]) {
				t.Fatalf("echo %d is #%d, %d bytes", got, b[0], len(b))
			}
			got++
		}
	}

	// Allocations: a batch of one sent on one connected socket and received on another (no
	// echo peer in between: it batches on its own).
	u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netipLoopback.Addr(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	v, err := net.DialUDP("udp4", nil, u.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	one := newSendBatch(1, []byte("probe"))
	if a := testing.AllocsPerRun(50, func() {
		if one.send(v, 1) != 0 {
			t.Fatal("not sent")
		}
		if n, err := in.recv(u); err != nil || n != 1 || string(in.bufs[0][:in.lens[0]]) != "probe" {
			t.Fatalf("recv %d %v", n, err)
		}
	}); a != 0 {
		t.Errorf("batch send and receive: %v allocs", a)
	}
}

func TestOnPayloadRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p []byte) []byte
	}{
		{"flipped pattern byte", func(p []byte) []byte { p[len(p)-1] ^= 1; return p }},
		{"other client", func(p []byte) []byte { p[offClient+3]++; return p }},
		{"truncated", func(p []byte) []byte { return p[:len(p)-1] }},
		{"not ours", func(p []byte) []byte { p[0] = 0; return p }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, ModeChannel, 100)
			c.send(c.tx)
			p := tt.mutate(append([]byte(nil), c.tx[channelDataHeader:]...))
			c.onPayload(p, nil, false)
			if c.corrupt.Load() != 1 || c.recv.Load() != 0 {
				t.Errorf("corrupt %d recv %d, want 1 and 0", c.corrupt.Load(), c.recv.Load())
			}
		})
	}
}

func BenchmarkSend(b *testing.B) {
	for _, mode := range []Mode{ModeChannel, ModeIndication} {
		b.Run(string(mode), func(b *testing.B) {
			c := testClient(b, mode, 160)
			b.ReportAllocs()
			b.SetBytes(int64(len(c.tx)))
			for b.Loop() {
				c.send(c.tx)
			}
		})
	}
}

func BenchmarkReceive(b *testing.B) {
	c := testClient(b, ModeChannel, 1200)
	c.send(c.tx)
	b.ReportAllocs()
	b.SetBytes(int64(len(c.tx)))
	for b.Loop() {
		frame := c.tx
		if _, data, err := parseChannelData(frame); err == nil {
			c.onPayload(data, frame, false)
		}
	}
}

func BenchmarkParseDataIndication(b *testing.B) {
	p := make([]byte, 160)
	fillPayload(p, 1)
	ind, err := buildSendIndication(netipLoopback, p)
	if err != nil {
		b.Fatal(err)
	}
	ind[1] = byte(typeDataInd)
	b.ReportAllocs()
	b.SetBytes(int64(len(ind)))
	for b.Loop() {
		if _, err := parseDataIndication(ind); err != nil {
			b.Fatal(err)
		}
	}
}

// A saturating run replaces each probe that comes back and every earlier one that has not
// (presumed lost), and nothing for one that comes back late, so the window stays full.
func TestReplaces(t *testing.T) {
	c := testClient(t, ModeChannel, 100)
	steps := []struct {
		name     string
		seq      uint64
		lostUpTo uint64 // a refill presumes every probe up to this lost first, if not 0
		want     int
	}{
		{"in order", 1, 0, 1},
		{"in order again", 2, 0, 1},
		{"3 and 4 lost", 5, 0, 3},
		{"3 late", 3, 0, 0},
		{"5 twice", 5, 0, 0},
		{"after a refill, an old probe late", 8, 10, 0},
		{"the refill's first", 11, 0, 1},
	}
	for _, s := range steps {
		if s.lostUpTo != 0 {
			c.presumeLostUpTo(s.lostUpTo)
		}
		if got := c.replaces(s.seq); got != s.want {
			t.Errorf("%s: replaces(%d) = %d, want %d", s.name, s.seq, got, s.want)
		}
	}
}
