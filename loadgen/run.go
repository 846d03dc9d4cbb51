package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	socketBuffer  = 4 << 20 // requested SO_RCVBUF/SO_SNDBUF (setBuffers)
	setupWorkers  = 16      // concurrent client setups
	firstChannel  = minChannel
	stallInterval = 20 * time.Millisecond // saturating runs: refill a window after this long without progress
	drainPoll     = 5 * time.Millisecond
)

// runner is the state of one Run.
type runner struct {
	cfg       Config // static
	base      time.Time
	sendEndNS atomic.Int64 // end of the send window, as now(); 0 until traffic starts
	clients   []*client
	groups    []*group
	peers     []*echoPeer
	stop      chan struct{} // closed by halt when the run ends or its context does
	stopOnce  sync.Once
	readers   sync.WaitGroup
	workers   sync.WaitGroup

	refreshes     atomic.Uint64
	refreshErrors atomic.Uint64
	refreshLost   atomic.Uint64 // clients with at least one failed refresh
}

// now is the monotonic time since the run began, in nanoseconds.
func (r *runner) now() int64 { return int64(time.Since(r.base)) }

// Run performs one load run and reports on it. It sets up every client,
// sends for cfg.Duration, drains, and closes every socket and goroutine it
// started before returning. It returns ErrBadConfig for an invalid Config,
// an error wrapping ErrTimeout or ErrRejected when setup fails, and
// ctx.Err() if ctx ends first.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{}, err
	}
	r := &runner{cfg: cfg, base: time.Now(), stop: make(chan struct{})}
	defer r.close()
	defer context.AfterFunc(ctx, r.halt)()
	if err := r.open(); err != nil {
		return Report{}, err
	}
	setupStart := time.Now()
	if err := r.setup(ctx); err != nil {
		return Report{}, err
	}
	setup := time.Since(setupStart)
	return r.traffic(ctx, setup)
}

// open creates the echo peers and the clients' sockets and starts their readers.
func (r *runner) open() error {
	cfg := r.cfg
	if cfg.Mode != ModePair {
		for range cfg.Groups {
			p, err := newEchoPeer(cfg.Local)
			if err != nil {
				return err
			}
			r.peers = append(r.peers, p)
			r.readers.Go(p.serve)
		}
	}
	for range cfg.Groups {
		r.groups = append(r.groups, &group{hist: newHist()})
	}
	local := net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Local, 0))
	for i := range cfg.Clients {
		remote := net.UDPAddrFromAddrPort(cfg.Server)
		if cfg.Mode == ModeDirect {
			remote = net.UDPAddrFromAddrPort(r.peers[i%len(r.peers)].addr)
		}
		conn, err := net.DialUDP("udp4", local, remote)
		if err != nil {
			return fmt.Errorf("loadgen: client %d: dial %s: %w", i, remote, err)
		}
		if cfg.Rate == 0 {
			setBuffers(conn, socketBuffer)
		}
		g := r.groups[i%len(r.groups)]
		c := &client{
			id:      uint32(i),
			r:       r,
			g:       g,
			conn:    conn,
			pattern: make([]byte, cfg.Size),
			ctrl:    make(chan []byte, 4),
		}
		if cfg.Credentials != nil {
			c.user, c.pass = cfg.Credentials(i)
		}
		fillPayload(c.pattern, c.id)
		g.clients = append(g.clients, c)
		r.clients = append(r.clients, c)
		r.readers.Go(c.readLoop)
	}
	if cfg.Mode == ModePair {
		for i := 0; i < len(r.clients); i += 2 {
			r.clients[i].partner, r.clients[i+1].partner = r.clients[i+1], r.clients[i]
		}
	}
	return nil
}

// halt tells every worker and transaction to stop.
func (r *runner) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// close ends the run: it stops the workers, closes every socket and waits
// for every goroutine.
func (r *runner) close() {
	r.halt()
	r.workers.Wait()
	for _, c := range r.clients {
		c.deallocate()
		_ = c.conn.Close()
	}
	for _, p := range r.peers {
		_ = p.conn.Close()
	}
	r.readers.Wait()
}

// setup allocates and binds every client, setupWorkers at a time.
func (r *runner) setup(ctx context.Context) error {
	mode := r.cfg.Mode
	if mode != ModeDirect {
		if err := r.forEach(ctx, func(c *client) error { return c.allocate() }); err != nil {
			return err
		}
		if err := r.forEach(ctx, func(c *client) error {
			c.channel = firstChannel
			if mode == ModePair {
				c.peer = c.partner.relayed
			} else {
				c.peer = r.peers[int(c.id)%len(r.peers)].addr
			}
			return c.bind(mode != ModeIndication)
		}); err != nil {
			return err
		}
		r.cfg.Logger.Info("loadgen: clients ready", "clients", len(r.clients), "mode", mode)
	}
	for _, c := range r.clients {
		var err error
		if c.tx, err = c.framePacket(); err != nil {
			return err
		}
		if r.cfg.Rate == 0 {
			c.out = newSendBatch(batchSize, c.tx)
		}
	}
	return nil
}

// forEach runs fn on every client with setupWorkers goroutines and returns
// the first error.
func (r *runner) forEach(ctx context.Context, fn func(*client) error) error {
	work := make(chan *client)
	errs := make(chan error, setupWorkers)
	var wg sync.WaitGroup
	for range min(setupWorkers, len(r.clients)) {
		wg.Go(func() {
			for c := range work {
				if err := fn(c); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for _, c := range r.clients {
		select {
		case work <- c:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// traffic runs the send window and the drain, and builds the report.
func (r *runner) traffic(ctx context.Context, setup time.Duration) (Report, error) {
	cfg := r.cfg
	var srv0, gen0 time.Duration
	var err error
	if cfg.ServerPID != 0 {
		if srv0, err = ProcessCPU(cfg.ServerPID); err != nil {
			return Report{}, err
		}
	}
	gen0, _ = ProcessCPU(os.Getpid()) // informational only
	mach0, err := MachineCPU()
	if err != nil {
		return Report{}, err
	}
	ours := []int{os.Getpid(), cfg.ServerPID}
	others0, err := SnapshotProcesses(ours...)
	if err != nil {
		return Report{}, err
	}

	start := time.Now()
	end := start.Add(cfg.Duration)
	r.sendEndNS.Store(int64(end.Sub(r.base)))
	var pacers sync.WaitGroup
	for i, g := range r.groups {
		pacers.Go(func() { r.pace(g, i, start, end) })
	}
	if cfg.Duration > cfg.RefreshInterval {
		r.workers.Go(r.refreshLoop)
	}

	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	window := time.NewTimer(cfg.Duration)
	defer window.Stop()
	var canceled error
send:
	for {
		select {
		case <-ctx.Done():
			canceled = ctx.Err()
			break send
		case <-window.C:
			break send
		case <-progress.C:
			if cfg.Progress != nil {
				sent, recv := r.totals()
				cfg.Progress(Progress{Elapsed: time.Since(start), Sent: sent, Received: recv})
			}
		}
	}
	if canceled != nil {
		r.halt()
		pacers.Wait()
		return Report{}, canceled
	}
	pacers.Wait()
	r.drain(ctx)
	elapsed := time.Since(start)
	var srv1, gen1 time.Duration
	if cfg.ServerPID != 0 {
		if srv1, err = ProcessCPU(cfg.ServerPID); err != nil {
			return Report{}, err
		}
	}
	gen1, _ = ProcessCPU(os.Getpid())
	mach1, err := MachineCPU()
	if err != nil {
		return Report{}, err
	}
	others1, err := SnapshotProcesses(ours...)
	if err != nil {
		return Report{}, err
	}
	r.halt()
	r.workers.Wait()
	rep := r.report(setup, elapsed)
	rep.GeneratorCPUSeconds = (gen1 - gen0).Seconds()
	mach := mach1.Sub(mach0)
	rep.MachineBusyCPUSeconds, rep.MachineIdleCPUSeconds, rep.MachineStealCPUSeconds = mach.Busy.Seconds(), mach.Idle.Seconds(), mach.Steal.Seconds()
	rep.OtherProcessesCPUSeconds = others1.Since(others0).Seconds()
	if cfg.ServerPID != 0 {
		rep.ServerCPUSeconds = (srv1 - srv0).Seconds()
		if rep.ServerCPUSeconds > 0 {
			rep.RelayedPerCPUSecond = float64(rep.Relayed) / rep.ServerCPUSeconds
		}
	}
	return rep, ctx.Err()
}

// pace sends the group's packets from start to end. Paced runs spread the
// group's clients over slots of about a millisecond within each packet
// period, so the group does not send in one burst per period; a late tick
// catches up on the slots it missed, so the average rate is exact.
// Groups are offset from each other by a fraction of a slot so that they do
// not all wake at the same instant. Saturating runs keep a window in flight
// and refill it after a stall.
func (r *runner) pace(g *group, index int, start, end time.Time) {
	if r.cfg.Rate == 0 {
		r.saturate(g, end)
		return
	}
	period := time.Second / time.Duration(r.cfg.Rate)
	slots := min(max(int(period/time.Millisecond), 1), len(g.clients))
	slotDur := period / time.Duration(slots)
	start = start.Add(slotDur * time.Duration(index) / time.Duration(len(r.groups)))
	bySlot := make([][]*client, slots)
	for i, c := range g.clients {
		bySlot[i%slots] = append(bySlot[i%slots], c)
	}
	tick := max(slotDur, time.Millisecond)
	maxCatchUp := slots * (int(tick/period) + 2)
	t := time.NewTicker(tick)
	defer t.Stop()
	next := 0
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		due := int(now.Sub(start)/slotDur) + 1
		if due-next > maxCatchUp {
			next = due - maxCatchUp
		}
		for ; next < due; next++ {
			for _, c := range bySlot[next%slots] {
				c.send(c.tx)
			}
		}
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

func (r *runner) saturate(g *group, end time.Time) {
	burst := func(c *client) {
		// Every probe still out is presumed lost (c.replaces): one that comes back late is
		// counted but not replaced, so the window stays at Window.
		c.presumeLostUpTo(c.seq.Load())
		for range r.cfg.Window {
			c.send(c.tx)
		}
	}
	for _, c := range g.clients {
		burst(c)
	}
	t := time.NewTicker(stallInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			if !now.Before(end) {
				return
			}
		}
		for _, c := range g.clients {
			recv := c.recv.Load()
			if recv == c.lastRecv {
				burst(c)
			}
			c.lastRecv = recv
		}
	}
}

// drain waits, up to cfg.Drain, for every probe sent to come back.
func (r *runner) drain(ctx context.Context) {
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	deadline := time.NewTimer(r.cfg.Drain)
	defer deadline.Stop()
	for {
		if sent, recv := r.totals(); recv >= sent {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-t.C:
		}
	}
}

// refreshLoop refreshes every client's allocation and binding each
// RefreshInterval until the run stops.
func (r *runner) refreshLoop() {
	t := time.NewTicker(r.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		for _, c := range r.clients {
			select {
			case <-r.stop:
				return
			default:
			}
			if err := c.refresh(r.cfg.Mode != ModeIndication); err != nil {
				if errors.Is(err, errClosed) {
					return // the run ended mid-transaction
				}
				r.refreshErrors.Add(1)
				if !c.refreshFailed.Swap(true) {
					r.refreshLost.Add(1)
				}
				r.cfg.Logger.Warn("loadgen: refresh failed", "client", c.id, "err", err)
				continue
			}
			r.refreshes.Add(1)
		}
	}
}

func (r *runner) totals() (sent, recv uint64) {
	for _, c := range r.clients {
		sent += c.seq.Load()
		recv += c.recv.Load()
	}
	return sent, recv
}

// report sums the counters and merges the histograms.
func (r *runner) report(setup, elapsed time.Duration) Report {
	cfg := r.cfg
	rep := Report{
		Mode: cfg.Mode, Clients: cfg.Clients, Rate: cfg.Rate, Size: cfg.Size,
		SetupSeconds:         setup.Seconds(),
		WindowSeconds:        elapsed.Seconds(),
		Refreshes:            r.refreshes.Load(),
		RefreshErrors:        r.refreshErrors.Load(),
		RefreshFailedClients: r.refreshLost.Load(),
	}
	if cfg.Rate == 0 {
		rep.Window = cfg.Window
	}
	var far uint64 // arrivals at the far end: echo peer or partner
	for _, c := range r.clients {
		rep.Sent += c.seq.Load()
		rep.Received += c.recv.Load()
		rep.Corrupt += c.corrupt.Load()
		rep.SendErrors += c.sendErrs.Load()
		far += c.pingsIn.Load()
		rep.ClientKernelDrops += kernelDrops(c.conn)
	}
	for _, p := range r.peers {
		far += p.recv.Load()
		rep.PeerReceived += p.recv.Load()
		rep.PeerKernelDrops += kernelDrops(p.conn)
	}
	rep.KernelDrops = rep.ClientKernelDrops + rep.PeerKernelDrops
	if rep.Sent > rep.Received {
		rep.Lost = rep.Sent - rep.Received
	}
	if rep.Sent > 0 {
		rep.LossPercent = 100 * float64(rep.Lost) / float64(rep.Sent)
	}
	rep.Delivered = far + rep.Received
	switch cfg.Mode {
	case ModePair:
		rep.Relayed = 2 * rep.Delivered
	case ModeDirect:
	default:
		rep.Relayed = rep.Delivered
	}
	if s := cfg.Duration.Seconds(); s > 0 {
		rep.SentPerSecond = float64(rep.Sent) / s
	}
	if s := elapsed.Seconds(); s > 0 {
		rep.PacketsPerSecond = float64(rep.Delivered) / s
		rep.Mbps = float64(rep.Delivered) * float64(cfg.Size) * 8 / s / 1e6
	}
	h := newHist()
	for _, g := range r.groups {
		g.mu.Lock()
		h.Merge(g.hist)
		g.mu.Unlock()
	}
	rep.RTT = percentiles(h)
	return rep
}
