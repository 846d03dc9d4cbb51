package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/loadgen"
)

// config is one run.
type config struct {
	server      netip.AddrPort
	secret      []byte
	n           int          // allocations to make and hold
	clients     int          // concurrent allocating goroutines
	sources     []netip.Addr // client socket addresses, perSource sockets each
	perSource   int
	samples     int            // Refresh and ChannelBind transactions at n live
	peer        netip.AddrPort // XOR-PEER-ADDRESS of the ChannelBinds
	pid         int            // server process, for RSS and CPU; 0: not measured
	timeout     time.Duration  // the whole run
	logProgress func(made, failed int, elapsed time.Duration)
}

// Report is the outcome of one run against one server.
type Report struct {
	Allocations int            `json:"allocations"` // asked for
	Made        int            `json:"made"`
	Failures    map[string]int `json:"failures,omitempty"` // Allocate failures by class (see errorClass)
	Clients     int            `json:"clients"`

	SetupSeconds    float64   `json:"setup_seconds"`
	AllocsPerSecond float64   `json:"allocs_per_second"` // Made over SetupSeconds
	TenthRates      []float64 `json:"tenth_rates"`       // allocations/s per tenth of the allocations made
	Allocate        Latency   `json:"allocate_ms"`       // both transactions of an Allocate (401, then authenticated)
	Retransmits     uint64    `json:"retransmits"`       // requests the client sent again (no answer within its RTO)

	Refresh             Latency        `json:"refresh_ms"`
	RefreshFailures     map[string]int `json:"refresh_failures,omitempty"`
	ChannelBind         Latency        `json:"channel_bind_ms"`
	ChannelBindFailures map[string]int `json:"channel_bind_failures,omitempty"`
	StaleNonces         int            `json:"stale_nonces"` // 438 answers, retried once with the fresh nonce

	// Incomplete says why the run stopped early (its --timeout): the setup rates are over
	// what was made, and no operations were timed.
	Incomplete string `json:"incomplete,omitempty"`

	RSSBefore        int64   `json:"rss_before_bytes,omitempty"`
	RSSAfter         int64   `json:"rss_after_bytes,omitempty"` // with Made allocations live
	RSSPerAllocation float64 `json:"rss_per_allocation_bytes,omitempty"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"` // over the setup
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`           // this process, over the setup
}

// alloc is one allocation: its own socket, its own pion client.
type alloc struct {
	conn   *countConn
	client *turn.Client
	relay  net.PacketConn
	user   string
	pass   string

	mu    sync.Mutex
	nonce string // Guarded by mu; the last NONCE an error response carried.
	realm string // Guarded by mu.
}

// countConn counts retransmissions: a request written with the transaction ID of the one
// before it (pion's client retransmits the same bytes).
type countConn struct {
	*net.UDPConn
	last  [stun.TransactionIDSize]byte // Owned by writers, serialised by pion's transaction timer.
	mu    sync.Mutex
	rtx   *atomic.Uint64
	owner *alloc
}

func (c *countConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if len(b) >= 20 && stun.IsMessage(b) {
		c.mu.Lock()
		if [stun.TransactionIDSize]byte(b[8:20]) == c.last {
			c.rtx.Add(1)
		}
		c.last = [stun.TransactionIDSize]byte(b[8:20])
		c.mu.Unlock()
	}
	return c.UDPConn.WriteTo(b, to)
}

// readLoop feeds what the socket receives to the pion client, with a small buffer (pion's own
// Listen reads into 64 KiB per client), and learns the nonce from error responses.
func (a *alloc) readLoop() {
	buf := make([]byte, 1600)
	for {
		n, from, err := a.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		a.sniff(buf[:n])
		_, _ = a.client.HandleInbound(buf[:n], from)
	}
}

func (a *alloc) sniff(b []byte) {
	if !stun.IsMessage(b) {
		return
	}
	m := &stun.Message{Raw: b}
	if m.Decode() != nil || m.Type.Class != stun.ClassErrorResponse {
		return
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if nonce.GetFrom(m) != nil {
		return
	}
	a.mu.Lock()
	a.nonce = nonce.String()
	if realm.GetFrom(m) == nil {
		a.realm = realm.String()
	}
	a.mu.Unlock()
}

func (a *alloc) close() {
	if a.relay != nil {
		_ = a.relay.Close()
	}
	a.client.Close()
	_ = a.conn.Close()
}

// transact sends an authenticated request of method with attrs (the pion client's
// PerformTransaction: its retransmissions, its integrity check of the answer) and retries once
// on 438 Stale Nonce.
func (a *alloc) transact(ctx context.Context, server net.Addr, method stun.Method, stale *atomic.Int64, attrs ...stun.Setter) error {
	for try := 0; ; try++ {
		a.mu.Lock()
		nonce, realm := a.nonce, a.realm
		a.mu.Unlock()
		if nonce == "" {
			return errNoNonce
		}
		setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		setters = append(setters, stun.NewUsername(a.user), stun.NewRealm(realm), stun.NewNonce(nonce),
			stun.NewLongTermIntegrity(a.user, realm, a.pass), stun.Fingerprint)
		msg, err := stun.Build(setters...)
		if err != nil {
			return err
		}
		res, err := a.client.PerformTransactionWithContext(msg, server, false, ctx)
		if err != nil {
			return err
		}
		if res.Msg.Type.Class == stun.ClassSuccessResponse {
			return nil
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(res.Msg); err != nil {
			return fmt.Errorf("%s without ERROR-CODE: %w", res.Msg.Type, err)
		}
		if code.Code == stun.CodeStaleNonce && try == 0 {
			stale.Add(1)
			a.sniff(res.Msg.Raw)
			continue
		}
		return codeError(code.Code)
	}
}

// run makes cfg.n allocations with cfg.clients goroutines, holds them all, then times
// cfg.samples Refreshes and ChannelBinds with all of them live.
func run(ctx context.Context, cfg config) (Report, error) {
	rep := Report{Allocations: cfg.n, Clients: cfg.clients, Failures: map[string]int{}}
	if err := checkFDs(cfg.n); err != nil {
		return rep, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	network, err := stdnet.NewNet()
	if err != nil {
		return rep, err
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	server := net.UDPAddrFromAddrPort(cfg.server)
	expiry := time.Now().Add(24 * time.Hour)
	var rtx atomic.Uint64

	if cfg.pid != 0 {
		if rep.RSSBefore, err = readRSS(cfg.pid); err != nil {
			return rep, fmt.Errorf("server rss: %w", err)
		}
	}
	srvCPU0, cliCPU0 := cpuOf(cfg.pid), cpuOf(os.Getpid())

	allocs := make([]*alloc, cfg.n)
	var (
		mu      sync.Mutex // guards lat, done, rep.Failures
		lat     = make([]time.Duration, 0, cfg.n)
		done    = make([]time.Duration, 0, cfg.n)
		next    atomic.Int64
		made    atomic.Int64
		failed  atomic.Int64
		wg      sync.WaitGroup
		fatal   error
		fatalMu sync.Mutex
	)
	start := time.Now()
	one := func(i int) {
		src := cfg.sources[i/cfg.perSource]
		uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			fatalMu.Lock()
			if fatal == nil {
				fatal = fmt.Errorf("client socket %d on %s: %w", i, src, err)
			}
			fatalMu.Unlock()
			cancel()
			return
		}
		a := &alloc{}
		a.conn = &countConn{UDPConn: uc, rtx: &rtx, owner: a}
		a.user, a.pass = auth.MintREST(cfg.secret, "ctl"+strconv.Itoa(i), expiry)
		a.client, err = turn.NewClient(&turn.ClientConfig{
			TURNServerAddr: cfg.server.String(),
			Username:       a.user,
			Password:       a.pass,
			Conn:           a.conn,
			Net:            network,
			LoggerFactory:  lf,
		})
		if err != nil {
			_ = uc.Close()
			fatalMu.Lock()
			if fatal == nil {
				fatal = err
			}
			fatalMu.Unlock()
			cancel()
			return
		}
		go a.readLoop()
		t0 := time.Now()
		a.relay, err = a.client.AllocateWithContext(ctx)
		t1 := time.Now()
		if err != nil {
			a.close()
			if ctx.Err() != nil {
				return // the run is over; not the server's failure
			}
			failed.Add(1)
			mu.Lock()
			rep.Failures[errorClass(err)]++
			mu.Unlock()
			return
		}
		allocs[i] = a
		made.Add(1)
		mu.Lock()
		lat = append(lat, t1.Sub(t0))
		done = append(done, t1.Sub(start))
		mu.Unlock()
	}
	for range cfg.clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.n || ctx.Err() != nil {
					return
				}
				one(i)
			}
		})
	}
	if cfg.logProgress != nil {
		stop := make(chan struct{})
		var pw sync.WaitGroup
		pw.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					cfg.logProgress(int(made.Load()), int(failed.Load()), time.Since(start))
				}
			}
		})
		wg.Wait()
		close(stop)
		pw.Wait()
	} else {
		wg.Wait()
	}
	setup := time.Since(start)
	defer func() {
		for _, a := range allocs {
			if a != nil {
				a.close()
			}
		}
	}()
	if fatal != nil {
		return rep, fatal
	}
	rep.Made = int(made.Load())
	rep.SetupSeconds = setup.Seconds()
	if setup > 0 {
		rep.AllocsPerSecond = float64(rep.Made) / setup.Seconds()
	}
	rep.TenthRates = tenthRates(done)
	rep.Allocate = summarize(lat)
	rep.Retransmits = rtx.Load()
	if cfg.pid != 0 {
		rep.ServerCPUSeconds = (cpuOf(cfg.pid) - srvCPU0).Seconds()
		if rep.RSSAfter, err = readRSS(cfg.pid); err != nil {
			return rep, fmt.Errorf("server rss: %w", err)
		}
		if rep.Made > 0 {
			rep.RSSPerAllocation = float64(rep.RSSAfter-rep.RSSBefore) / float64(rep.Made)
		}
	}
	rep.ClientCPUSeconds = (cpuOf(os.Getpid()) - cliCPU0).Seconds()
	if ctx.Err() != nil {
		// Bounded run: report what was made (the rate is what matters), skip the operations.
		rep.Incomplete = fmt.Sprintf("setup cut short after %s: %d of %d made", setup.Round(time.Second), rep.Made, cfg.n)
		return rep, nil
	}

	// Operations with every allocation live: evenly spread samples.
	live := make([]*alloc, 0, rep.Made)
	for _, a := range allocs {
		if a != nil {
			live = append(live, a)
		}
	}
	k := min(cfg.samples, len(live))
	sample := make([]*alloc, k)
	for j := range k {
		sample[j] = live[j*len(live)/k]
	}
	var stale atomic.Int64
	var refreshErr, bindErr error
	rep.Refresh, rep.RefreshFailures, refreshErr = timeOps(ctx, sample, cfg.clients, func(a *alloc) error {
		return a.transact(ctx, server, stun.MethodRefresh, &stale, lifetimeAttr(600))
	})
	rep.ChannelBind, rep.ChannelBindFailures, bindErr = timeOps(ctx, sample, cfg.clients, func(a *alloc) error {
		return a.transact(ctx, server, stun.MethodChannelBind, &stale,
			channelAttr(0x4000), peerAttr(cfg.peer))
	})
	rep.StaleNonces = int(stale.Load())
	if err := errors.Join(refreshErr, bindErr); err != nil {
		rep.Incomplete = err.Error()
	}
	return rep, nil
}

// timeOps runs op on every allocation of sample with c goroutines and returns the latency
// percentiles of the successes and the failures by class.
func timeOps(ctx context.Context, sample []*alloc, c int, op func(*alloc) error) (Latency, map[string]int, error) {
	var (
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, len(sample))
		fails = map[string]int{}
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(sample) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(sample[i])
				d := time.Since(t0)
				mu.Lock()
				if err != nil {
					if ctx.Err() == nil {
						fails[errorClass(err)]++
					}
				} else {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(fails) == 0 {
		fails = nil
	}
	if err := ctx.Err(); err != nil {
		return summarize(lat), fails, fmt.Errorf("operations with every allocation live cut short: %w", err)
	}
	return summarize(lat), fails, nil
}

func cpuOf(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, _ := loadgen.ProcessCPU(pid)
	return d
}

// checkFDs refuses a run this process cannot hold: one socket per allocation, plus what the
// runtime and the standard streams use.
func checkFDs(n int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if need := uint64(n) + 64; lim.Cur < need {
		return fmt.Errorf("%d allocations need %d file descriptors, RLIMIT_NOFILE is %d (hard %d): raise it (ulimit -n) or run several client processes", n, need, lim.Cur, lim.Max)
	}
	return nil
}

// RFC 8656, section 14.2: LIFETIME "is a 32-bit unsigned integer value representing the number
// of seconds remaining until expiration".
func lifetimeAttr(seconds uint32) stun.RawAttribute {
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: binary.BigEndian.AppendUint32(nil, seconds)}
}

// RFC 8656, section 14.1: CHANNEL-NUMBER is "a 16-bit unsigned integer followed by a two-octet
// RFFU (Reserved For Future Use) field, which MUST be set to 0 on transmission".
func channelAttr(ch uint16) stun.RawAttribute {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: append(binary.BigEndian.AppendUint16(nil, ch), 0, 0)}
}

// peerAttr is XOR-PEER-ADDRESS.
type peerAttr netip.AddrPort

func (p peerAttr) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}
