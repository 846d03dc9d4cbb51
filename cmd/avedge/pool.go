package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/avedge/avedge/config"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/pool"
	"github.com/avedge/avedge/relay"
)

// poolRole is this process's part in the pool: its load document (GET /load beside
// /metrics) and, when pool-member or pool-discover is set, the monitor of the pool, which the
// built-in credential service lists relays from and the relay picks redirect targets from.
type poolRole struct {
	ps  config.PoolSettings // Static after construction.
	mon *pool.Monitor       // nil: no pool configured. Static after construction.
	// rep is set once the relay is bound (start); nil until then: no redirect.
	rep     atomic.Pointer[pool.Reporter]
	cancel  context.CancelFunc
	running sync.WaitGroup // the monitor's Run
}

func newPoolRole(ps config.PoolSettings, log *slog.Logger) (*poolRole, error) {
	p := &poolRole{ps: ps, cancel: func() {}}
	if ps.Monitor != nil {
		mc := *ps.Monitor
		mc.Logger = log
		mon, err := pool.NewMonitor(mc)
		if err != nil {
			return nil, err
		}
		p.mon = mon
	}
	return p, nil
}

// redirect is relay.Config.Redirect: over the threshold (or while draining, whatever the
// load), the best pool member other than this relay whose score is below the threshold
// (below 1 while draining with no threshold set).
func (p *poolRole) redirect(client netip.AddrPort, draining bool) (netip.AddrPort, bool) {
	rep := p.rep.Load()
	if rep == nil || p.mon == nil {
		return netip.AddrPort{}, false
	}
	limit := p.ps.RedirectThreshold
	if !draining && (limit <= 0 || rep.Load().Score() <= limit) {
		return netip.AddrPort{}, false
	}
	if limit <= 0 {
		limit = 1
	}
	return p.mon.Alternate(rep.Instance(), limit, client.Addr())
}

// start builds the load document of srv (bound as rc says), registers the pool collector on
// reg and starts polling the pool.
func (p *poolRole) start(srv *relay.Server, rc relay.Config, reg prometheus.Registerer) error {
	relays, alternates := p.ps.Relays, p.ps.Alternates
	if len(relays) == 0 {
		for _, ri := range relaysOf(srv) {
			if ip, err := netip.ParseAddr(ri.HostName); err == nil && ip.IsUnspecified() && len(rc.RelayIPs) > 0 {
				ri.HostName = rc.RelayIPs[0].String()
			}
			relays = append(relays, pool.Endpoint{Location: ri.Location, HostName: ri.HostName, UDPPort: ri.UDPPort, TCPPort: ri.TCPPort})
		}
		if len(alternates) == 0 {
			for _, e := range relays {
				if ip, err := netip.ParseAddr(e.HostName); err == nil && e.UDPPort != 0 {
					alternates = append(alternates, netip.AddrPortFrom(ip, uint16(e.UDPPort)).String())
				}
			}
		}
	}
	rep, err := pool.NewReporter(pool.ReporterConfig{
		Stats: srv.Stats, Ready: srv.Ready, Version: version, Zone: p.ps.Zone,
		MaxAllocations: max(rc.MaxAllocations, 0), MaxBPS: p.ps.MaxBPS,
		Relays: relays, Alternates: alternates,
	})
	if err != nil {
		return err
	}
	p.rep.Store(rep)
	if p.mon == nil {
		return nil
	}
	if err := reg.Register(metrics.NewPoolCollector(p.mon)); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.running.Go(func() { p.mon.Run(ctx) })
	return nil
}

// load is the current load document (an empty one before start).
func (p *poolRole) load() pool.Load {
	if rep := p.rep.Load(); rep != nil {
		return rep.Load()
	}
	return pool.Load{}
}

// stop ends the polling and waits for it.
func (p *poolRole) stop() {
	p.cancel()
	p.running.Wait()
}
