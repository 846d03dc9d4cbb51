package probe

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestNewPercentiles(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: NewPercentiles sorts
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Percentiles
	}{
		{"empty", nil, Percentiles{}},
		{"one", ms(5), Percentiles{N: 1, Min: ms(5)[0], P50: ms(5)[0], P90: ms(5)[0], P99: ms(5)[0], Max: ms(5)[0]}},
		{"1..100", ms(hundred...), Percentiles{N: 100, Min: ms(1)[0], P50: ms(50)[0], P90: ms(90)[0], P99: ms(99)[0], Max: ms(100)[0]}},
		{"ten", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), Percentiles{N: 10, Min: ms(1)[0], P50: ms(5)[0], P90: ms(9)[0], P99: ms(10)[0], Max: ms(10)[0]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NewPercentiles(tt.in); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// loopConn is an in-memory packet pipe end: Write delivers to the peer,
// optionally through a mangle function.
type loopConn struct {
	in     chan []byte
	peer   *loopConn
	mangle func([]byte)
	once   sync.Once
	done   chan struct{}
}

func newLoopPair() (*loopConn, *loopConn) {
	a := &loopConn{in: make(chan []byte, 1024), done: make(chan struct{})}
	b := &loopConn{in: make(chan []byte, 1024), done: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

var errClosed = errors.New("closed")

func (c *loopConn) Read(p []byte) (int, error) {
	select {
	case b := <-c.in:
		return copy(p, b), nil
	case <-c.done:
		return 0, errClosed
	}
}

func (c *loopConn) Write(p []byte) (int, error) {
	b := slices.Clone(p)
	if c.mangle != nil {
		c.mangle(b)
	}
	c.peer.in <- b
	return len(p), nil
}

func (c *loopConn) Close() { c.once.Do(func() { close(c.done) }) }

// exchange runs two pingers over a loop pair the way Check does.
func exchange(t *testing.T, cc CheckConfig, mangleA func([]byte)) [2]Direction {
	t.Helper()
	a, b := newLoopPair()
	a.mangle = mangleA
	ps := [2]*pinger{newPinger(a, 0, cc, time.Now), newPinger(b, 1, cc, time.Now)}
	var readers, senders sync.WaitGroup
	for _, p := range ps {
		readers.Go(p.readLoop)
		senders.Go(func() { p.sendAll(t.Context()) })
	}
	senders.Wait()
	a.Close()
	b.Close()
	readers.Wait()
	return [2]Direction{ps[0].direction("a->b"), ps[1].direction("b->a")}
}

func TestPingerExchange(t *testing.T) {
	cc := CheckConfig{Count: 20, Size: 64, Interval: time.Millisecond, Linger: 2 * time.Second}.withDefaults()
	tests := []struct {
		name        string
		mangle      func([]byte)
		wantRecv    [2]int
		wantCorrupt [2]int
	}{
		{"clean", nil, [2]int{20, 20}, [2]int{0, 0}},
		// a flips a payload bit on every write: b sees a's pings corrupt
		// (so a gets no echo) and a's echoes of b's pings corrupt.
		{"bit flip a->b", func(b []byte) { b[len(b)-1] ^= 1 }, [2]int{0, 0}, [2]int{0, 40}},
		// a rewrites the kind byte: same, caught by the header check.
		{"wrong kind a->b", func(b []byte) { b[0] = 'Q' }, [2]int{0, 0}, [2]int{0, 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.mangle != nil {
				cc.Linger = 50 * time.Millisecond // nothing will come back
			}
			ds := exchange(t, cc, tt.mangle)
			for i, d := range ds {
				if d.Sent != cc.Count || d.Received != tt.wantRecv[i] || d.Corrupt != tt.wantCorrupt[i] {
					t.Errorf("%s: %+v, want received %d corrupt %d", d.Name, d, tt.wantRecv[i], tt.wantCorrupt[i])
				}
			}
		})
	}
}
