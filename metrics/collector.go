package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// sourceBox lets an interface value live behind an atomic.Pointer.
type sourceBox struct{ src Source }

// collector turns a [Snapshot] into constant metrics at scrape time.
type collector struct {
	// Static after construction.
	buildInfo       prometheus.Metric
	allocationsDesc *prometheus.Desc
	permissionsDesc *prometheus.Desc
	channelsDesc    *prometheus.Desc
	portsCapDesc    *prometheus.Desc
	portsDesc       *prometheus.Desc
	packetsDesc     *prometheus.Desc
	bytesDesc       *prometheus.Desc
	dropsDesc       *prometheus.Desc
	bindingDesc     *prometheus.Desc
	drainingDesc    *prometheus.Desc
	tcpConnsDesc    *prometheus.Desc
	tcpBindDesc     *prometheus.Desc
	tcpIdleDesc     *prometheus.Desc
	tcpLimitDesc    *prometheus.Desc
	tcpPolicyDesc   *prometheus.Desc
	proxyDesc       *prometheus.Desc
	snapshots       sync.Pool // of *Snapshot
	source          atomic.Pointer[sourceBox]
}

func newCollector(opts Options) *collector {
	c := &collector{
		allocationsDesc: prometheus.NewDesc("avedge_allocations_active",
			"TURN allocations currently active, by client transport and relayed address family.",
			[]string{"transport", "family"}, nil),
		permissionsDesc: prometheus.NewDesc("avedge_permissions_active",
			"TURN permissions currently installed, over all allocations.", nil, nil),
		channelsDesc: prometheus.NewDesc("avedge_channels_active",
			"TURN channels currently bound, over all allocations.", nil, nil),
		portsCapDesc: prometheus.NewDesc("avedge_relay_ports_capacity",
			"Relay ports in the configured edge port range.", nil, nil),
		portsDesc: prometheus.NewDesc("avedge_relay_ports",
			"Relay ports of the edge range that are not free, by state.",
			[]string{"state"}, nil),
		packetsDesc: prometheus.NewDesc("avedge_relayed_packets_total",
			"Packets relayed, by direction and client-side path, including ended allocations.",
			[]string{"direction", "path"}, nil),
		bytesDesc: prometheus.NewDesc("avedge_relayed_bytes_total",
			"Application bytes relayed (peer-side UDP payload), by direction and client-side path, including ended allocations.",
			[]string{"direction", "path"}, nil),
		dropsDesc: prometheus.NewDesc("avedge_dropped_packets_total",
			"Packets the relay dropped, by reason.",
			[]string{"reason"}, nil),
		bindingDesc: prometheus.NewDesc("avedge_stun_binding_requests_total",
			"STUN Binding requests answered.", nil, nil),
		drainingDesc: prometheus.NewDesc("avedge_draining",
			"1 while the relay is draining (refusing new allocations), else 0.", nil, nil),
		tcpConnsDesc: prometheus.NewDesc("avedge_tcp_relay_connections_active",
			"RFC 6062 TCP relay peer connections open (bound by a ConnectionBind or waiting for one).", nil, nil),
		tcpBindDesc: prometheus.NewDesc("avedge_tcp_relay_bind_timeouts_total",
			"TCP relay peer connections closed because no ConnectionBind claimed them in time.", nil, nil),
		tcpIdleDesc: prometheus.NewDesc("avedge_tcp_relay_idle_closes_total",
			"TCP relay connection pairs closed for idleness.", nil, nil),
		tcpLimitDesc: prometheus.NewDesc("avedge_tcp_relay_limit_refusals_total",
			"TCP relay peer connections refused by a cap (a Connect answered 447, an inbound connection closed), by limit.",
			[]string{"limit"}, nil),
		tcpPolicyDesc: prometheus.NewDesc("avedge_tcp_relay_policy_refusals_total",
			"TCP relay peer connections refused by the peer policy, by stage (connect: a Connect; inbound: at accept; reload: closed by a policy reload).",
			[]string{"stage"}, nil),
		proxyDesc: prometheus.NewDesc("avedge_proxy_protocol_refusals_total",
			"Connections a PROXY protocol listener closed before any TURN byte, by reason.",
			[]string{"reason"}, nil),
	}
	c.buildInfo = prometheus.MustNewConstMetric(
		prometheus.NewDesc("avedge_build_info",
			"A metric with a constant '1' value labeled by the avedge version, Go version and pion/turn version.",
			[]string{"version", "goversion", "pion_version"}, nil),
		prometheus.GaugeValue, 1, opts.Version, opts.GoVersion, opts.PionVersion)
	c.snapshots.New = func() any { return new(Snapshot) }
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.buildInfo.Desc()
	for _, d := range []*prometheus.Desc{
		c.allocationsDesc, c.permissionsDesc, c.channelsDesc, c.portsCapDesc,
		c.portsDesc, c.packetsDesc, c.bytesDesc, c.dropsDesc, c.bindingDesc,
		c.drainingDesc, c.tcpConnsDesc, c.tcpBindDesc, c.tcpIdleDesc, c.tcpLimitDesc,
		c.tcpPolicyDesc, c.proxyDesc,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It may run concurrently with
// itself (several scrapes) and with the relay's data path.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshots.Get().(*Snapshot)
	defer c.snapshots.Put(s)
	s.reset()
	if b := c.source.Load(); b != nil {
		b.src.Snapshot(s)
	}

	ch <- c.buildInfo
	for t := range numTransports {
		for f := range numFamilies {
			ch <- prometheus.MustNewConstMetric(c.allocationsDesc, prometheus.GaugeValue,
				float64(s.Allocations[t][f]), transportLabels[t], familyLabels[f])
		}
	}
	ch <- prometheus.MustNewConstMetric(c.permissionsDesc, prometheus.GaugeValue, float64(s.Permissions))
	ch <- prometheus.MustNewConstMetric(c.channelsDesc, prometheus.GaugeValue, float64(s.Channels))
	ch <- prometheus.MustNewConstMetric(c.portsCapDesc, prometheus.GaugeValue, float64(s.Ports.Capacity))
	ch <- prometheus.MustNewConstMetric(c.portsDesc, prometheus.GaugeValue, float64(s.Ports.Held), PortsHeld)
	ch <- prometheus.MustNewConstMetric(c.portsDesc, prometheus.GaugeValue, float64(s.Ports.Reserved), PortsReserved)
	ch <- prometheus.MustNewConstMetric(c.portsDesc, prometheus.GaugeValue, float64(s.Ports.Quarantined), PortsQuarantined)
	for d := range NumDirections {
		for p := range NumPaths {
			tr := s.Traffic[d][p]
			if Path(p) != PathTCP { // a byte stream has no packets
				ch <- prometheus.MustNewConstMetric(c.packetsDesc, prometheus.CounterValue,
					float64(tr.Packets), directionLabels[d], pathLabels[p])
			}
			ch <- prometheus.MustNewConstMetric(c.bytesDesc, prometheus.CounterValue,
				float64(tr.Bytes), directionLabels[d], pathLabels[p])
		}
	}
	// Every known reason is exposed, at 0 until it happens, and reasons the
	// relay invents beyond the documented set fold into "other" so the
	// label stays bounded.
	var other uint64
	for reason, n := range s.Drops {
		if bounded(reason, dropReasons) == LabelOther {
			other += n
		}
	}
	for _, reason := range dropReasons {
		n := s.Drops[reason]
		if reason == LabelOther {
			n = other
		}
		ch <- prometheus.MustNewConstMetric(c.dropsDesc, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(c.bindingDesc, prometheus.CounterValue, float64(s.BindingRequests))
	draining := 0.0
	if s.Draining {
		draining = 1
	}
	ch <- prometheus.MustNewConstMetric(c.drainingDesc, prometheus.GaugeValue, draining)
	tr := &s.TCPRelay
	ch <- prometheus.MustNewConstMetric(c.tcpConnsDesc, prometheus.GaugeValue, float64(tr.Conns))
	ch <- prometheus.MustNewConstMetric(c.tcpBindDesc, prometheus.CounterValue, float64(tr.BindTimeouts))
	ch <- prometheus.MustNewConstMetric(c.tcpIdleDesc, prometheus.CounterValue, float64(tr.IdleCloses))
	for l := range NumTCPLimits {
		ch <- prometheus.MustNewConstMetric(c.tcpLimitDesc, prometheus.CounterValue, float64(tr.LimitRefused[l]), tcpLimitLabels[l])
	}
	for p := range NumTCPPolicyStages {
		ch <- prometheus.MustNewConstMetric(c.tcpPolicyDesc, prometheus.CounterValue, float64(tr.PolicyRefused[p]), tcpPolicyLabels[p])
	}
	for r := range NumProxyRefusals {
		ch <- prometheus.MustNewConstMetric(c.proxyDesc, prometheus.CounterValue, float64(s.ProxyRefused[r]), proxyRefusalLabels[r])
	}
}
