package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// Defaults of CheckConfig.
const (
	DefaultCount    = 100
	DefaultSize     = 200
	DefaultInterval = 10 * time.Millisecond
	DefaultLinger   = time.Second
	// MinSize and MaxSize bound CheckConfig.Size: the header, and a payload
	// that fits any path's MTU through a TURN relay.
	MinSize = pingHeader + 1
	MaxSize = 1200
)

// CheckConfig says what the relay-only check sends. Every zero value is documented.
type CheckConfig struct {
	// Count is the number of pings each side sends; 0 means DefaultCount.
	Count int
	// Size is each packet's size in bytes; 0 means DefaultSize. Clamped to
	// [MinSize, MaxSize].
	Size int
	// Interval is the pause between one side's pings; 0 means DefaultInterval.
	Interval time.Duration
	// Linger is how long to wait for echoes after the last ping; 0 means
	// DefaultLinger.
	Linger time.Duration
}

func (c CheckConfig) withDefaults() CheckConfig {
	if c.Count <= 0 {
		c.Count = DefaultCount
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	c.Size = min(max(c.Size, MinSize), MaxSize)
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Linger <= 0 {
		c.Linger = DefaultLinger
	}
	return c
}

// Direction is one side's pings: sent by that side, echoed by the other.
type Direction struct {
	Name     string `json:"name"` // "a->b" (controlling agent's pings) or "b->a"
	Sent     int    `json:"sent"`
	Received int    `json:"received"` // byte-exact echoes
	// Corrupt counts packets this side received (the other's pings, echoes
	// of its own) whose bytes were not those sent; Duplicates, echoes
	// received twice.
	Corrupt    int     `json:"corrupt"`
	Duplicates int     `json:"duplicates"`
	Loss       float64 `json:"loss"` // 1 - Received/Sent
}

// Percentiles summarise round-trip times (nearest-rank percentiles).
type Percentiles struct {
	N   int           `json:"n"`
	Min time.Duration `json:"min_ns"`
	P50 time.Duration `json:"p50_ns"`
	P90 time.Duration `json:"p90_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// NewPercentiles computes the percentiles of samples (which it sorts).
func NewPercentiles(samples []time.Duration) Percentiles {
	if len(samples) == 0 {
		return Percentiles{}
	}
	slices.Sort(samples)
	rank := func(p int) time.Duration {
		// Nearest rank: the smallest sample with at least p% at or below it.
		i := (p*len(samples) + 99) / 100
		return samples[max(i, 1)-1]
	}
	return Percentiles{N: len(samples), Min: samples[0], P50: rank(50), P90: rank(90), P99: rank(99), Max: samples[len(samples)-1]}
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	// Local and Remote are the selected pair, seen by the controlling agent.
	Local  Candidate `json:"local"`
	Remote Candidate `json:"remote"`
	// Gathered is the time until both agents had a relay candidate;
	// Connected, the time from the start of gathering (candidates trickle,
	// so checks overlap it) to a selected pair.
	Gathered   time.Duration `json:"gathered_ns"`
	Connected  time.Duration `json:"connected_ns"`
	Directions []Direction   `json:"directions"`
	RTT        Percentiles   `json:"rtt"`
	// Redirects are the 300 (Try Alternate) answers followed before gathering: a turn: URL
	// over UDP whose Allocate a relay redirects is used at the ALTERNATE-SERVER instead.
	Redirects []Redirect `json:"redirects,omitempty"`
}

// Check connects two relay-only ICE agents to each other through the TURN
// URLs of cfg (after following the redirects of followRedirects), in-process, and exchanges cc.Count pings each way, each echoed
// back and checked byte for byte on both legs. Gathering and connecting are
// bounded by cfg.Timeout; the exchange by Count*Interval+Linger. It returns
// the report so far with an error wrapping ErrNoRelayCandidate (an agent
// gathered no relay candidate) or ErrConnectivity (no connection, every ping
// lost, or a corrupt packet).
func Check(ctx context.Context, cfg Config, cc CheckConfig) (*CheckReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cc = cc.withDefaults()
	var urls []*stun.URI
	for _, u := range cfg.URLs {
		if isTURN(u) {
			urls = append(urls, withCreds(u, cfg.Credentials))
		}
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("probe: check needs a turn: URL: %w", ErrNoURLs)
	}
	setupCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	urls, redirects, err := followRedirects(setupCtx, urls, cfg.Timeout)
	if err != nil {
		return &CheckReport{Redirects: redirects}, err
	}
	relayOnly := []ice.CandidateType{ice.CandidateTypeRelay}
	var agents [2]*ice.Agent
	var cols [2]*collector
	for i := range agents {
		// Relay-only, there is no better pair to wait for: accept the first
		// relay pair that works (pion's default waits 2 s for one).
		a, err := newAgent(setupCtx, cfg, urls, relayOnly, ice.WithRelayAcceptanceMinWait(0))
		if err != nil {
			return nil, err
		}
		defer a.Close()
		agents[i], cols[i] = a, newCollector(cfg.Now)
	}
	// Trickle ICE: each candidate goes to the other agent as soon as it is
	// gathered, as SDP, the way a signalling channel would carry it, and the
	// agents connect while gathering goes on (a dead TURN URL among live ones
	// does not hold the call up).
	for i, a := range agents {
		col, other := cols[i], agents[1-i]
		if err := a.OnCandidate(func(c ice.Candidate) {
			col.onCandidate(c)
			if c == nil {
				return
			}
			if rc, err := ice.UnmarshalCandidate(c.Marshal()); err == nil {
				_ = other.AddRemoteCandidate(rc) // fails only once other is closed
			}
		}); err != nil {
			return nil, fmt.Errorf("probe: ICE: %w", err)
		}
	}
	var creds [2][2]string
	for i, a := range agents {
		if creds[i][0], creds[i][1], err = a.GetLocalUserCredentials(); err != nil {
			return nil, fmt.Errorf("probe: check: %w", err)
		}
	}
	rep := &CheckReport{Redirects: redirects}
	start := cfg.Now()
	for _, a := range agents {
		if err := a.GatherCandidates(); err != nil {
			return nil, fmt.Errorf("probe: ICE gather: %w", err)
		}
	}
	// An agent done gathering without a relay candidate ends the wait: there
	// is nothing to connect with.
	connCtx, connCancel := context.WithCancel(setupCtx)
	var watch sync.WaitGroup
	for _, c := range cols {
		watch.Go(func() {
			select {
			case <-c.done:
				if _, ok := c.first(); !ok {
					connCancel()
				}
			case <-connCtx.Done():
			}
		})
	}
	var conns [2]*ice.Conn
	var errs [2]error
	var wg sync.WaitGroup
	wg.Go(func() { conns[0], errs[0] = agents[0].Dial(connCtx, creds[1][0], creds[1][1]) })
	wg.Go(func() { conns[1], errs[1] = agents[1].Accept(connCtx, creds[0][0], creds[0][1]) })
	wg.Wait()
	connCancel()
	watch.Wait()
	for i, c := range cols {
		first, ok := c.first()
		if !ok {
			return rep, fmt.Errorf("probe: check: agent %c gathered no relay candidate in %v: %w", 'a'+i, cfg.Timeout, ErrNoRelayCandidate)
		}
		rep.Gathered = max(rep.Gathered, first)
	}
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return rep, fmt.Errorf("probe: check: not connected in %v: %w: %w", cfg.Timeout, ErrConnectivity, err)
	}
	rep.Connected = cfg.Now().Sub(start)
	if pair, err := agents[0].GetSelectedCandidatePair(); err == nil && pair != nil {
		rep.Local = candidateOf(pair.Local, "", 0)
		rep.Remote = candidateOf(pair.Remote, "", 0)
	}

	pingers := [2]*pinger{newPinger(conns[0], 0, cc, cfg.Now), newPinger(conns[1], 1, cc, cfg.Now)}
	var readers sync.WaitGroup
	for _, p := range pingers {
		readers.Go(p.readLoop)
	}
	var senders sync.WaitGroup
	for _, p := range pingers {
		senders.Go(func() { p.sendAll(ctx) })
	}
	senders.Wait()
	// Closing the agents ends the read loops.
	for _, a := range agents {
		_ = a.Close()
	}
	readers.Wait()

	var rtts []time.Duration
	lost, corrupt := 0, 0
	for i, p := range pingers {
		d := p.direction([]string{"a->b", "b->a"}[i])
		rep.Directions = append(rep.Directions, d)
		rtts = append(rtts, p.rtts...)
		lost += d.Sent - d.Received
		corrupt += d.Corrupt
	}
	rep.RTT = NewPercentiles(rtts)
	switch {
	case corrupt > 0:
		return rep, fmt.Errorf("probe: check: %d corrupt packets: %w", corrupt, ErrConnectivity)
	case len(rtts) == 0:
		return rep, fmt.Errorf("probe: check: every packet lost: %w", ErrConnectivity)
	}
	return rep, nil
}

// Ping wire format, both ways:
//
//	kind(1) 'P' ping or 'E' echo | origin(1) side that sent the ping |
//	seq(4) big endian | fill: byte(seq*131 + i*7 + origin*29) for i = 0…
//
// The echo is the ping with kind 'E', so both legs are checked byte for byte.
const (
	pingHeader = 6
	kindPing   = 'P'
	kindEcho   = 'E'
)

func fillPing(p []byte, kind, origin byte, seq uint32) {
	p[0], p[1] = kind, origin
	binary.BigEndian.PutUint32(p[2:], seq)
	for i := range p[pingHeader:] {
		p[pingHeader+i] = byte(seq*131 + uint32(i)*7 + uint32(origin)*29)
	}
}

// validPing reports whether p is exactly the packet fillPing makes for its
// own header, of the expected size.
func validPing(p []byte, size int) bool {
	if len(p) != size || size < MinSize || (p[0] != kindPing && p[0] != kindEcho) || p[1] > 1 {
		return false
	}
	seq := binary.BigEndian.Uint32(p[2:])
	for i, b := range p[pingHeader:] {
		if b != byte(seq*131+uint32(i)*7+uint32(p[1])*29) {
			return false
		}
	}
	return true
}

type rw interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}

// pinger is one side of the exchange.
type pinger struct {
	conn rw               // Static after construction.
	side byte             // Static after construction.
	cc   CheckConfig      // Static after construction.
	now  func() time.Time // Static after construction.
	all  chan struct{}    // Closed when every ping is echoed.

	wmu sync.Mutex // serialises writes of pings and echoes

	mu       sync.Mutex
	sentAt   []time.Time     // Guarded by mu; zero until sent.
	got      []bool          // Guarded by mu.
	rtts     []time.Duration // Guarded by mu; read after the loops end.
	sent     int             // Guarded by mu.
	received int             // Guarded by mu.
	corrupt  int             // Guarded by mu.
	dups     int             // Guarded by mu.
}

func newPinger(conn rw, side byte, cc CheckConfig, now func() time.Time) *pinger {
	return &pinger{conn: conn, side: side, cc: cc, now: now, all: make(chan struct{}),
		sentAt: make([]time.Time, cc.Count), got: make([]bool, cc.Count)}
}

func (p *pinger) write(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.conn.Write(b)
	return err
}

// sendAll sends Count pings, one per Interval, then waits for the last echo
// or Linger, whichever is first.
func (p *pinger) sendAll(ctx context.Context) {
	buf := make([]byte, p.cc.Size)
	tick := time.NewTicker(p.cc.Interval)
	defer tick.Stop()
	for seq := 0; seq < p.cc.Count; seq++ {
		fillPing(buf, kindPing, p.side, uint32(seq))
		p.mu.Lock()
		p.sentAt[seq] = p.now()
		p.sent++
		p.mu.Unlock()
		if err := p.write(buf); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
	linger := time.NewTimer(p.cc.Linger)
	defer linger.Stop()
	select {
	case <-p.all:
	case <-linger.C:
	case <-ctx.Done():
	}
}

// readLoop echoes the other side's pings and matches echoes of its own, until
// the connection is closed.
func (p *pinger) readLoop() {
	buf := make([]byte, MaxSize+1)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		p.handle(buf[:n])
	}
}

func (p *pinger) handle(b []byte) {
	if !validPing(b, p.cc.Size) {
		p.mu.Lock()
		p.corrupt++
		p.mu.Unlock()
		return
	}
	seq := binary.BigEndian.Uint32(b[2:])
	switch {
	case b[0] == kindPing && b[1] != p.side:
		b[0] = kindEcho
		_ = p.write(b) // a lost echo shows as loss
	case b[0] == kindEcho && b[1] == p.side && int(seq) < p.cc.Count:
		at := p.now()
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case p.sentAt[seq].IsZero():
			p.corrupt++ // an echo of a ping never sent
		case p.got[seq]:
			p.dups++
		default:
			p.got[seq] = true
			p.received++
			p.rtts = append(p.rtts, at.Sub(p.sentAt[seq]))
			if p.received == p.cc.Count {
				close(p.all)
			}
		}
	default:
		p.mu.Lock()
		p.corrupt++
		p.mu.Unlock()
	}
}

func (p *pinger) direction(name string) Direction {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := Direction{Name: name, Sent: p.sent, Received: p.received, Corrupt: p.corrupt, Duplicates: p.dups}
	if d.Sent > 0 {
		d.Loss = 1 - float64(d.Received)/float64(d.Sent)
	}
	return d
}
