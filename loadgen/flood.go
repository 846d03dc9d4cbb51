package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// A flood is the control-plane traffic no live call sends and every edge gets: spoofed STUN
// Binding requests (the server answers each to whatever source they name) and Allocate
// requests carrying MESSAGE-INTEGRITY under a wrong password (the server computes an HMAC
// for each before it can refuse it), from many source addresses. Flood sends one, bounded in
// datagrams and in time, on one goroutine, so that its rate is what one core reaches.

// Bounds on a flood.
const (
	MaxFloodSources  = 65536
	MaxFloodCount    = 100_000_000
	MaxFloodDuration = 10 * time.Minute
)

// FloodConfig describes a flood. Zero values are documented per field.
type FloodConfig struct {
	// Server is the TURN server's UDP address. Required.
	Server netip.AddrPort
	// Sources is the number of source addresses, 1..MaxFloodSources, each a socket bound to
	// an address counted up from SourceBase; zero means 1024.
	Sources int
	// SourceBase is the first source address; zero means 127.1.0.1 (on Linux the whole of
	// 127.0.0.0/8 is local, so any of it can be bound without configuration).
	SourceBase netip.Addr
	// Count bounds the datagrams sent, 1..MaxFloodCount; zero means 200 000.
	Count int
	// Duration bounds the flood's time, up to MaxFloodDuration; zero means 10 s.
	Duration time.Duration
	// Rate is datagrams per second over all sources; zero sends as fast as one goroutine can.
	Rate int
	// AllocateEvery makes every n-th datagram an Allocate request (the rest are Binding
	// requests); zero means 2 (half and half), negative none.
	AllocateEvery int
	// Username goes into the Allocate requests; a well-formed one (a live TURN REST username)
	// makes the server look up its key and check the HMAC. Zero: "flood".
	Username string
	// Realm and Nonce go into the Allocate requests. Zero: the flood asks the server for them
	// first (an Allocate without credentials, answered 401) from its first source, or from
	// every source with NoncePerSource.
	Realm, Nonce string
	// NoncePerSource asks every source for a nonce of its own before the flood starts, for a
	// server that binds nonces to the client's address (avedge does): its Allocates then
	// reach the MESSAGE-INTEGRITY check instead of a cheap 438.
	NoncePerSource bool
}

// FloodReport is what a flood sent.
type FloodReport struct {
	Sources    int     `json:"sources"`
	Sent       uint64  `json:"sent"`
	Bindings   uint64  `json:"bindings"`
	Allocates  uint64  `json:"allocates"`
	SendErrors uint64  `json:"send_errors"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
	// KernelDrops counts the server's answers the kernel dropped at the flood's own sockets,
	// which are never read (their receive buffers are kept small on purpose), as of the
	// flood's end: answers still in flight then are not counted. 0 where unread.
	KernelDrops uint64 `json:"kernel_drops"`
	// NonceFallbacks counts the sources (with NoncePerSource) whose ask for a nonce went
	// unanswered and that flood with the first source's nonce instead.
	NonceFallbacks int `json:"nonce_fallbacks"`
}

func (c FloodConfig) withDefaults() (FloodConfig, error) {
	if c.Sources == 0 {
		c.Sources = 1024
	}
	if !c.SourceBase.IsValid() {
		c.SourceBase = netip.AddrFrom4([4]byte{127, 1, 0, 1})
	}
	if c.Count == 0 {
		c.Count = 200_000
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.AllocateEvery == 0 {
		c.AllocateEvery = 2
	}
	if c.Username == "" {
		c.Username = "flood"
	}
	switch {
	case !c.Server.IsValid():
		return c, fmt.Errorf("%w: flood: no server address", ErrBadConfig)
	case c.Sources < 1 || c.Sources > MaxFloodSources:
		return c, fmt.Errorf("%w: flood: sources %d not in 1..%d", ErrBadConfig, c.Sources, MaxFloodSources)
	case c.Count < 1 || c.Count > MaxFloodCount:
		return c, fmt.Errorf("%w: flood: count %d not in 1..%d", ErrBadConfig, c.Count, MaxFloodCount)
	case c.Duration < 0 || c.Duration > MaxFloodDuration:
		return c, fmt.Errorf("%w: flood: duration %s not in 0..%s", ErrBadConfig, c.Duration, MaxFloodDuration)
	case c.Rate < 0:
		return c, fmt.Errorf("%w: flood: rate %d is negative", ErrBadConfig, c.Rate)
	}
	return c, nil
}

// Flood sends a flood to cfg.Server and returns what it sent, when Count datagrams are out,
// Duration has passed, or ctx is done, whichever comes first.
func Flood(ctx context.Context, cfg FloodConfig) (FloodReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return FloodReport{}, err
	}
	conns := make([]*net.UDPConn, 0, cfg.Sources)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	ip := cfg.SourceBase
	for i := 0; i < cfg.Sources; i++ {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return FloodReport{}, fmt.Errorf("loadgen: flood: source %s: %w", ip, err)
		}
		_ = c.SetReadBuffer(4096) // the answers are not read
		conns = append(conns, c)
		ip = ip.Next()
	}
	var allocs [][]byte // by source (one shared unless NoncePerSource)
	nonceFallbacks := 0
	if cfg.AllocateEvery > 0 {
		asks := 1
		if cfg.NoncePerSource && cfg.Nonce == "" {
			asks = len(conns)
		}
		var realm0, nonce0 string // the first source's
		for i := 0; i < asks; i++ {
			realm, nonce := cfg.Realm, cfg.Nonce
			if nonce == "" {
				if realm, nonce, err = askNonce(conns[i], cfg.Server); err != nil {
					if i == 0 || !errors.Is(err, ErrTimeout) {
						return FloodReport{}, err
					}
					// A loaded server (or machine) left one source unanswered: it floods
					// with the first source's nonce, which the server may refuse cheaply.
					realm, nonce = realm0, nonce0
					nonceFallbacks++
				}
				if i == 0 {
					realm0, nonce0 = realm, nonce
				}
			}
			a, err := floodAllocate(cfg.Username, realm, nonce)
			if err != nil {
				return FloodReport{}, err
			}
			allocs = append(allocs, a)
		}
	}
	binding, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return FloodReport{}, err
	}
	bind := binding.Raw

	rep := FloodReport{Sources: cfg.Sources, NonceFallbacks: nonceFallbacks}
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	var gap time.Duration
	if cfg.Rate > 0 {
		gap = time.Second / time.Duration(cfg.Rate)
	}
	const check = 256 // datagrams between looks at the clock and ctx
	for i := 0; i < cfg.Count; i++ {
		if i%check == 0 {
			now := time.Now()
			if now.After(deadline) || ctx.Err() != nil {
				break
			}
			if gap > 0 {
				if due := start.Add(time.Duration(i) * gap); due.After(now) {
					time.Sleep(due.Sub(now))
				}
			}
		}
		m := bind
		src := i % len(conns)
		isAlloc := cfg.AllocateEvery > 0 && i%cfg.AllocateEvery == 0
		if isAlloc {
			m = allocs[src%len(allocs)]
		}
		// A fresh transaction ID per request: the server keeps no transaction state for
		// any of them, but nothing should look like a retransmission either.
		binary.BigEndian.PutUint64(m[12:20], uint64(i))
		if _, err := conns[src].WriteToUDPAddrPort(m, cfg.Server); err != nil {
			rep.SendErrors++
			continue
		}
		rep.Sent++
		if isAlloc {
			rep.Allocates++
		} else {
			rep.Bindings++
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	if rep.Seconds > 0 {
		rep.PerSecond = float64(rep.Sent) / rep.Seconds
	}
	for _, c := range conns {
		rep.KernelDrops += kernelDrops(c)
	}
	return rep, nil
}

// askNonce sends an Allocate without credentials from c and returns the REALM and NONCE of
// the 401 it gets.
func askNonce(c *net.UDPConn, server netip.AddrPort) (realm, nonce string, err error) {
	req, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transportUDP)
	if err != nil {
		return "", "", err
	}
	buf := make([]byte, 2048)
	for try := 0; try < maxSends; try++ {
		if _, err := c.WriteToUDPAddrPort(req.Raw, server); err != nil {
			return "", "", fmt.Errorf("loadgen: flood: ask for a nonce: %w", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(rto << try))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: buf[:n]}
			if m.Decode() != nil || m.TransactionID != req.TransactionID {
				continue
			}
			var r stun.Realm
			var nn stun.Nonce
			if r.GetFrom(m) != nil || nn.GetFrom(m) != nil {
				return "", "", fmt.Errorf("loadgen: flood: the server's answer to an Allocate without credentials has no REALM and NONCE: %w", ErrRejected)
			}
			_ = c.SetReadDeadline(time.Time{})
			return r.String(), nn.String(), nil
		}
	}
	return "", "", fmt.Errorf("loadgen: flood: ask for a nonce: %w", ErrTimeout)
}

// floodAllocate builds an Allocate request signed with a wrong password (the server checks
// the HMAC, then refuses it).
func floodAllocate(username, realm, nonce string) ([]byte, error) {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), transportUDP,
		stun.NewUsername(username), stun.NewRealm(realm), stun.NewNonce(nonce),
		stun.NewLongTermIntegrity(username, realm, "not the password"))
	if err != nil {
		return nil, fmt.Errorf("loadgen: flood: build Allocate: %w", err)
	}
	if !m.Contains(stun.AttrMessageIntegrity) {
		return nil, errors.New("loadgen: flood: Allocate without MESSAGE-INTEGRITY")
	}
	return m.Raw, nil
}
