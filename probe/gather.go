package probe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/stdnet"
)

// Candidate is one gathered ICE candidate.
type Candidate struct {
	Type      string `json:"type"`      // host, srflx, prflx, relay
	Network   string `json:"network"`   // udp4, udp6, tcp4, tcp6
	Transport string `json:"transport"` // udp or tcp
	Address   string `json:"address"`
	Port      int    `json:"port"`
	// RelatedAddress and RelatedPort are the base: the local socket of a
	// srflx or relay candidate.
	RelatedAddress string `json:"related_address,omitempty"`
	RelatedPort    int    `json:"related_port,omitempty"`
	// RelayProtocol is, for relay candidates, the client-to-server transport
	// of the allocation: udp, tcp, tls or dtls.
	RelayProtocol string `json:"relay_protocol,omitempty"`
	// URL is the server the candidate came from; "" for host candidates.
	URL string `json:"url,omitempty"`
	// Took is the time from the start of gathering to this candidate.
	Took time.Duration `json:"took_ns"`
	// SDP is the candidate attribute value (RFC 8839 section 5.1).
	SDP string `json:"sdp"`
}

func candidateOf(c ice.Candidate, url string, took time.Duration) Candidate {
	out := Candidate{
		Type:      c.Type().String(),
		Network:   c.NetworkType().String(),
		Transport: c.NetworkType().NetworkShort(),
		Address:   c.Address(),
		Port:      c.Port(),
		URL:       url,
		Took:      took,
		SDP:       c.Marshal(),
	}
	if ra := c.RelatedAddress(); ra != nil {
		out.RelatedAddress, out.RelatedPort = ra.Address, ra.Port
	}
	if r, ok := c.(*ice.CandidateRelay); ok {
		out.RelayProtocol = r.RelayProtocol()
	}
	return out
}

// ServerResult is what one STUN or TURN server gave.
type ServerResult struct {
	URL  string `json:"url"`
	Kind string `json:"kind"` // stun or turn
	// Srflx and Relay count the candidates ICE gathered from this server.
	Srflx int `json:"srflx"`
	Relay int `json:"relay"`
	// Took is the time to the first candidate from this server, or to the
	// failure.
	Took time.Duration `json:"took_ns"`
	// Direct is the outcome of trying the server directly (STUN Binding or
	// TURN Allocate), run beside ICE gathering to learn why it failed.
	Direct Diagnosis `json:"direct"`
	// Failure is nil when the server gave what it should (a relay candidate
	// for turn, a srflx one for stun).
	Failure *Failure `json:"failure,omitempty"`
}

// Report is the outcome of Gather.
type Report struct {
	Started time.Time     `json:"started"`
	Took    time.Duration `json:"took_ns"`
	// Candidates are host candidates first, then each server's in URL
	// order, each group in arrival order.
	Candidates []Candidate    `json:"candidates"`
	Servers    []ServerResult `json:"servers"`
}

// Count returns the number of candidates of type typ ("host", "srflx", "relay").
func (r *Report) Count(typ string) int {
	n := 0
	for _, c := range r.Candidates {
		if c.Type == typ {
			n++
		}
	}
	return n
}

// Err summarises the report: nil when a relay candidate was gathered (with
// only stun: URLs, a srflx one); otherwise an error wrapping
// ErrNoRelayCandidate, and also ErrAuthRefused when every TURN server
// refused the credentials.
func (r *Report) Err() error {
	turns, auth := 0, 0
	for _, s := range r.Servers {
		if s.Kind == "turn" {
			turns++
			if s.Failure != nil && s.Failure.Reason == ReasonAuth {
				auth++
			}
		}
	}
	switch {
	case turns > 0 && r.Count("relay") > 0, turns == 0 && r.Count("srflx") > 0:
		return nil
	case turns > 0 && auth == turns:
		return fmt.Errorf("%w: %w: every TURN server answered 401", ErrNoRelayCandidate, ErrAuthRefused)
	case turns == 0:
		return fmt.Errorf("%w: no srflx candidate from any STUN server", ErrNoRelayCandidate)
	}
	return ErrNoRelayCandidate
}

// Gather gathers candidates like a client would, bounded by cfg.Timeout: host
// candidates on the local interfaces, and for each URL the srflx and relay
// candidates ICE gets from it (one ICE agent per URL, so each candidate is
// attributed to its server), while Diagnose tries the URL directly. A
// server failing is reported in the Report, not as an error; the error is
// for a bad configuration only.
func Gather(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	rep := &Report{Started: cfg.Now(), Servers: make([]ServerResult, len(cfg.URLs))}
	groups := make([][]Candidate, len(cfg.URLs)+1)
	var wg sync.WaitGroup
	wg.Go(func() {
		res, err := gatherAgent(ctx, cfg, nil, []ice.CandidateType{ice.CandidateTypeHost})
		if err != nil {
			cfg.Logger.Debug("probe: host candidates", "err", err)
		}
		groups[0] = res.cands
	})
	for i, u := range cfg.URLs {
		u := withCreds(u, cfg.Credentials)
		wg.Go(func() {
			rep.Servers[i], groups[i+1] = gatherServer(ctx, cfg, u)
		})
	}
	wg.Wait()
	for _, g := range groups {
		rep.Candidates = append(rep.Candidates, g...)
	}
	rep.Took = cfg.Now().Sub(rep.Started)
	return rep, nil
}

// gatherServer runs ICE gathering for one URL beside a direct diagnosis.
func gatherServer(ctx context.Context, cfg Config, u *stun.URI) (ServerResult, []Candidate) {
	sr := ServerResult{URL: urlString(u), Kind: "stun"}
	if isTURN(u) {
		sr.Kind = "turn"
	}
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	var dwg sync.WaitGroup
	dwg.Go(func() {
		sr.Direct = Diagnose(ctx, u, cfg.InsecureSkipVerify, cfg.Now)
		// A refusal the server will repeat ends the wait on ICE too.
		if f := sr.Direct.Failure; f != nil && f.definitive() {
			icancel()
		}
	})
	start := cfg.Now()
	res, err := gatherAgent(ictx, cfg, []*stun.URI{u}, []ice.CandidateType{ice.CandidateTypeServerReflexive, ice.CandidateTypeRelay})
	gaveUp := cfg.Now().Sub(start)
	dwg.Wait()
	for i := range res.cands {
		res.cands[i].URL = sr.URL
		switch res.cands[i].Type {
		case "srflx":
			sr.Srflx++
		case "relay":
			sr.Relay++
		}
	}
	if len(res.cands) > 0 {
		sr.Took = res.cands[0].Took
	}
	want := sr.Srflx
	if sr.Kind == "turn" {
		want = sr.Relay
	}
	if want == 0 {
		sr.Took = gaveUp
		switch {
		case err != nil:
			sr.Failure = &Failure{Reason: ReasonError, Detail: err.Error()}
		case sr.Direct.Failure != nil:
			sr.Failure = sr.Direct.Failure
		case !res.complete:
			sr.Failure = &Failure{Reason: ReasonTimeout, Detail: fmt.Sprintf("gathering not complete after %v", gaveUp.Round(time.Millisecond))}
		default:
			sr.Failure = &Failure{Reason: ReasonNoCand, Detail: "ICE gathered nothing from this server though it answered directly"}
		}
	}
	return sr, res.cands
}

type agentResult struct {
	cands    []Candidate
	complete bool // gathering ended by itself (not by ctx)
}

// newAgent makes an ICE agent for the probe: no mDNS, TCP dials bound by
// ctx, pion's logs at debug level.
func newAgent(ctx context.Context, cfg Config, urls []*stun.URI, types []ice.CandidateType, extra ...ice.AgentOption) (*ice.Agent, error) {
	sn, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("probe: network: %w", err)
	}
	opts := []ice.AgentOption{
		ice.WithNetworkTypes(cfg.NetworkTypes),
		ice.WithCandidateTypes(types),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithNet(boundedNet{Net: sn, ctx: ctx}),
		ice.WithLoggerFactory(pionLog{log: cfg.Logger}),
		ice.WithInsecureSkipVerify(cfg.InsecureSkipVerify),
		ice.WithSTUNGatherTimeout(cfg.Timeout),
	}
	if len(urls) > 0 {
		opts = append(opts, ice.WithUrls(urls))
	}
	if cfg.IncludeLoopback {
		opts = append(opts, ice.WithIncludeLoopback())
	}
	a, err := ice.NewAgentWithOptions(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("probe: ICE agent: %w", err)
	}
	return a, nil
}

// gatherAgent gathers with a fresh agent until gathering completes or ctx
// ends, then closes the agent.
func gatherAgent(ctx context.Context, cfg Config, urls []*stun.URI, types []ice.CandidateType) (agentResult, error) {
	a, err := newAgent(ctx, cfg, urls, types)
	if err != nil {
		return agentResult{}, err
	}
	defer a.Close()
	c := newCollector(cfg.Now)
	if err := a.OnCandidate(c.onCandidate); err != nil {
		return agentResult{}, fmt.Errorf("probe: ICE: %w", err)
	}
	if err := a.GatherCandidates(); err != nil {
		return agentResult{}, fmt.Errorf("probe: ICE gather: %w", err)
	}
	complete := c.wait(ctx)
	return agentResult{cands: c.snapshot(), complete: complete}, nil
}

// collector receives an agent's candidates.
type collector struct {
	now   func() time.Time // Static after construction.
	start time.Time        // Static after construction.
	done  chan struct{}    // Closed on the end-of-candidates nil.
	once  sync.Once

	mu    sync.Mutex
	cands []Candidate // Guarded by mu.
}

func newCollector(now func() time.Time) *collector {
	return &collector{now: now, start: now(), done: make(chan struct{})}
}

func (c *collector) onCandidate(cand ice.Candidate) {
	if cand == nil {
		c.once.Do(func() { close(c.done) })
		return
	}
	took := c.now().Sub(c.start)
	c.mu.Lock()
	c.cands = append(c.cands, candidateOf(cand, "", took))
	c.mu.Unlock()
}

// wait blocks until gathering completes (true) or ctx ends (false).
func (c *collector) wait(ctx context.Context) bool {
	select {
	case <-c.done:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *collector) snapshot() []Candidate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Candidate(nil), c.cands...)
}

// first returns when the first candidate came, if one did.
func (c *collector) first() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cands) == 0 {
		return 0, false
	}
	return c.cands[0].Took, true
}
