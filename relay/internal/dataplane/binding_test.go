//go:build linux

package dataplane

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"testing"
	"time"

	"github.com/avedge/avedge/relay/policy"
)

// drainQueue empties both lanes of q.
func drainQueue(q *HandoffQueue) {
	for q.Len() > 0 {
		select {
		case p := <-q.q:
			slowPool.Put(p)
		case p := <-q.live:
			slowPool.Put(p)
		}
	}
}

// stunMsg builds a STUN message of type typ with transaction ID tid and the given attributes
// (type, value), padded.
func stunMsg(typ uint16, tid byte, attrs ...any) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:2], typ)
	binary.BigEndian.PutUint32(b[4:8], magicCookie)
	for i := 8; i < 20; i++ {
		b[i] = tid + byte(i)
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		v := attrs[i+1].([]byte)
		var h [4]byte
		binary.BigEndian.PutUint16(h[0:2], uint16(attrs[i].(int)))
		binary.BigEndian.PutUint16(h[2:4], uint16(len(v)))
		b = append(b, h[:]...)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-20))
	return b
}

func TestIsPlainBinding(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    []byte
		want bool
	}{
		{"no attributes", stunMsg(BindingRequest, 1), true},
		{"SOFTWARE and FINGERPRINT", stunMsg(BindingRequest, 1, 0x8022, []byte("client"), attrFingerprint, []byte{1, 2, 3, 4}), true},
		{"MESSAGE-INTEGRITY", stunMsg(BindingRequest, 1, 0x0008, make([]byte, 20)), false},
		{"USERNAME", stunMsg(BindingRequest, 1, 0x0006, []byte("u")), false},
		{"unknown comprehension-required", stunMsg(BindingRequest, 1, 0x7f00, []byte{1}), false},
		{"Allocate", stunMsg(0x0003, 1), false},
		{"Binding indication", stunMsg(0x0011, 1), false},
		{"bad cookie", func() []byte { b := stunMsg(BindingRequest, 1); b[4] = 0; return b }(), false},
		{"length beyond datagram", func() []byte { b := stunMsg(BindingRequest, 1); b[3] = 8; return b }(), false},
		{"attribute beyond length", func() []byte {
			b := stunMsg(BindingRequest, 1, 0x8022, []byte("abcd"))
			b[23] = 9
			return b
		}(), false},
		{"truncated attribute header", func() []byte {
			b := append(stunMsg(BindingRequest, 1), 0x80, 0x22)
			b[3] = 2
			return b
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isPlainBinding(tc.d); got != tc.want {
				t.Fatalf("isPlainBinding = %v, want %v", got, tc.want)
			}
		})
	}
}

// The answer's bytes, decoded by hand per RFC 8489 (the relay's tests compare them with
// pion's own answer byte for byte).
func TestWriteBindingSuccess(t *testing.T) {
	for _, from := range []string{"192.0.2.7:40000", "[2001:db8::1:2]:3478", "[::ffff:198.51.100.9]:1"} {
		t.Run(from, func(t *testing.T) {
			ap := netip.MustParseAddrPort(from)
			req := stunMsg(BindingRequest, 7)
			b := make([]byte, bindingAnswerMax)
			copy(b, req)
			n := writeBindingSuccess(b, ap)
			b = b[:n]
			if binary.BigEndian.Uint16(b[0:2]) != bindingSuccess || int(binary.BigEndian.Uint16(b[2:4])) != n-20 ||
				string(b[4:20]) != string(req[4:20]) {
				t.Fatalf("header % x, want a Binding success with the request's cookie and transaction ID", b[:20])
			}
			if binary.BigEndian.Uint16(b[20:22]) != attrXORMapped {
				t.Fatalf("first attribute %#x, want XOR-MAPPED-ADDRESS", binary.BigEndian.Uint16(b[20:22]))
			}
			l := int(binary.BigEndian.Uint16(b[22:24]))
			port := binary.BigEndian.Uint16(b[26:28]) ^ uint16(magicCookie>>16)
			raw := make([]byte, l-4)
			for i := range raw {
				raw[i] = b[28+i] ^ b[4+i]
			}
			ip, _ := netip.AddrFromSlice(raw)
			if got := netip.AddrPortFrom(ip, port); got != netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) {
				t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", got, ap)
			}
			fp := b[n-8:]
			if binary.BigEndian.Uint16(fp[0:2]) != attrFingerprint ||
				binary.BigEndian.Uint32(fp[4:8]) != crc32.ChecksumIEEE(b[:n-8])^fingerprintXOR {
				t.Fatalf("FINGERPRINT % x does not check", fp)
			}
		})
	}
}

// A plain Binding request is answered by the worker: the answer leaves the listener socket
// for the client, nothing is queued for pion, and the traffic counters are untouched.
func TestWorkerAnswersBinding(t *testing.T) {
	r := newForwardRig(t)
	req := stunMsg(BindingRequest, 3, 0x8022, []byte("test"))
	n := r.put(0, req)
	r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
	if q := r.lis.lis.Shards[0].Len(); q != 0 {
		t.Fatalf("%d datagrams queued for pion, want none", q)
	}
	r.w.flush()
	buf := make([]byte, 128)
	_ = r.cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := r.cl.Read(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	want := make([]byte, bindingAnswerMax)
	copy(want, req)
	want = want[:writeBindingSuccess(want, r.client)]
	if string(buf[:m]) != string(want) {
		t.Fatalf("answer % x, want % x", buf[:m], want)
	}
	if r.w.stats.BindingAnswers() != 1 || r.w.stats.binding.Load() != 1 {
		t.Fatalf("answers %d, Binding requests %d; want 1 and 1", r.w.stats.BindingAnswers(), r.w.stats.binding.Load())
	}
}

// Requests of a client with a live allocation take the priority lane and are read first;
// others wait in the ordinary one. A Binding with MESSAGE-INTEGRITY still goes to pion.
func TestLiveClientsFirst(t *testing.T) {
	r := newForwardRig(t)
	stranger := netip.MustParseAddrPort("127.0.0.9:5000")
	q := r.lis.lis.Shards[0]
	send := func(d []byte, from netip.AddrPort) {
		n := r.put(0, d)
		r.w.handle(r.lis, &r.w.bufs[0], n, from)
	}
	send(stunMsg(0x0003, 1), stranger)                                   // Allocate, unknown client
	send(stunMsg(BindingRequest, 2, 0x0008, make([]byte, 20)), stranger) // not plain: pion's
	send(stunMsg(0x0004, 3), r.client)                                   // Refresh of the live allocation
	if len(q.q) != 2 || len(q.live) != 1 {
		t.Fatalf("queued %d ordinary, %d live; want 2 and 1", len(q.q), len(q.live))
	}
	b := make([]byte, 2048)
	_, from, err := q.Pop(b)
	if err != nil || from != r.client || binary.BigEndian.Uint16(b[0:2]) != 0x0004 {
		t.Fatalf("first popped: a %#x from %v (%v), want the Refresh from %v", binary.BigEndian.Uint16(b[0:2]), from, err, r.client)
	}
	drainQueue(q)
}

// Over the per-source limit, an unknown client's requests are dropped before anything is
// queued; a live client's requests are not limited; Binding answers have a limit of their
// own (the control plane's BindingRate limiter).
func TestRequestLimit(t *testing.T) {
	r := newForwardRig(t)
	r.w.limit = policy.NewLimiter(1, 2, 16) // burst 2, one more per second
	stranger := netip.MustParseAddrPort("127.0.0.9:5000")
	q := r.lis.lis.Shards[0]
	for i := 0; i < 5; i++ {
		n := r.put(0, stunMsg(0x0003, byte(i)))
		r.w.handle(r.lis, &r.w.bufs[0], n, stranger)
	}
	for i := 0; i < 5; i++ {
		n := r.put(0, stunMsg(0x0004, byte(i)))
		r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
	}
	if len(q.q) != 2 || len(q.live) != 5 {
		t.Fatalf("queued %d from the stranger, %d from the live client; want 2 and 5", len(q.q), len(q.live))
	}
	if d := r.w.stats.Drops(DropRateLimited); d != 3 {
		t.Fatalf("rate-limited drops %d, want 3", d)
	}
	drainQueue(q)
	// The stranger's port differs but its address is the same: still limited.
	n := r.put(0, stunMsg(0x0003, 9))
	r.w.handle(r.lis, &r.w.bufs[0], n, netip.AddrPortFrom(stranger.Addr(), 5001))
	if q.Len() != 0 || r.w.stats.Drops(DropRateLimited) != 4 {
		t.Fatalf("Allocate over the limit from another port: %d queued, %d drops; want none and 4", q.Len(), r.w.stats.Drops(DropRateLimited))
	}
	// Binding answers count against their own limit, live client or not.
	r.w.bindLim = policy.NewLimiter(1, 1, 16)
	for _, from := range []netip.AddrPort{r.client, r.client} {
		n := r.put(0, stunMsg(BindingRequest, 9))
		r.w.handle(r.lis, &r.w.bufs[0], n, from)
	}
	if len(r.w.out) != 1 || r.w.stats.Drops(DropRateLimited) != 5 {
		t.Fatalf("two Bindings at a limit of one: %d answers queued, %d drops; want 1 and 5", len(r.w.out), r.w.stats.Drops(DropRateLimited))
	}
	r.w.flush()
}

// A client's shard depends on its IP address only (every port of it, mapped or not); clients
// spread over the shards.
func TestShardOfClient(t *testing.T) {
	l := NewListener(0, 4, 8)
	seen := map[*HandoffQueue]int{}
	for i := 0; i < 400; i++ {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}), uint16(40000+i))
		q := l.Shard(ap)
		if l.Shard(ap) != q || l.Shard(netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())) != q ||
			l.Shard(netip.AddrPortFrom(ap.Addr(), 1)) != q {
			t.Fatalf("%v: shard not stable", ap)
		}
		seen[q]++
	}
	if len(seen) != 4 {
		t.Fatalf("400 clients used %d of 4 shards", len(seen))
	}
	for q, n := range seen {
		if n < 50 {
			t.Fatalf("a shard got %d of 400 clients (%p)", n, q)
		}
	}
}

// The Binding answer allocates nothing, like the forwarding step.
func TestBindingAnswerAllocatesNothing(t *testing.T) {
	r := newForwardRig(t)
	r.w.bindLim = policy.NewLimiter(1e9, 1e9, 16)
	req := stunMsg(BindingRequest, 3)
	allocs := testing.AllocsPerRun(1000, func() {
		n := r.put(0, req)
		r.w.handle(r.lis, &r.w.bufs[0], n, r.client)
		r.w.flush()
	})
	if allocs != 0 {
		t.Fatalf("Binding answer allocates %.1f times per request, want 0", allocs)
	}
}

// A reader that needs a token for new work keeps serving the priority lane while it waits for
// one: a live allocation's request never waits for another shard's flood.
func TestPopGatedServesLiveWhileWaiting(t *testing.T) {
	q := NewPriorityQueue(4, 4)
	gate := make(chan struct{}, 1)
	gate <- struct{}{} // another shard holds the only token
	fresh := netip.MustParseAddrPort("127.0.0.9:1")
	live := netip.MustParseAddrPort("127.0.0.1:2")
	if !q.Push(stunMsg(0x0003, 1), fresh) {
		t.Fatal("push")
	}
	type popped struct {
		from netip.AddrPort
		took bool
		err  error
	}
	got := make(chan popped)
	pop := func() {
		b := make([]byte, 2048)
		_, from, took, err := q.PopGated(b, gate)
		got <- popped{from, took, err}
	}
	go pop()
	if !q.PushLive(stunMsg(0x0004, 2), live) {
		t.Fatal("push live")
	}
	if p := <-got; p.err != nil || p.from != live || p.took {
		t.Fatalf("first pop: %+v, want the live request without a token", p)
	}
	go pop()
	<-gate // the other shard is done: the token is free
	if p := <-got; p.err != nil || p.from != fresh || !p.took {
		t.Fatalf("second pop: %+v, want the new request with the token", p)
	}
	if len(gate) != 1 {
		t.Fatalf("tokens taken: %d, want 1", len(gate))
	}
	q.Close()
	go pop()
	if p := <-got; p.err == nil {
		t.Fatalf("pop after close: %+v, want net.ErrClosed", p)
	}
}
