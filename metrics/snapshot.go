package metrics

// Source is what the scrape-time collector reads: the relay implements it by
// loading its atomics. Snapshot is called once per scrape, concurrently with
// the data path and possibly with other scrapes; it fills s, which the
// collector hands over zeroed (Drops empty but non-nil).
type Source interface {
	Snapshot(s *Snapshot)
}

// SourceFunc adapts a function to [Source].
type SourceFunc func(s *Snapshot)

// Snapshot calls f(s).
func (f SourceFunc) Snapshot(s *Snapshot) { f(s) }

// Counter is a monotonic packet and byte total.
type Counter struct {
	Packets, Bytes uint64
}

// PortStats describes the relay ports of the edge range.
type PortStats struct {
	Capacity    int // ports in the configured range
	Held        int // bound to an allocation
	Reserved    int // set aside (e.g. the odd port of an EVEN-PORT pair)
	Quarantined int // released recently and not yet reusable
}

// Snapshot is the relay's load at one instant. Gauges are current values;
// Traffic, Drops and BindingRequests are totals since the process started,
// including allocations that have ended, so they never decrease.
type Snapshot struct {
	// Allocations active, by [Transport] and [Family].
	Allocations [numTransports][numFamilies]int
	// Permissions active, over all allocations.
	Permissions int
	// Channels bound, over all allocations.
	Channels int
	// Ports of the edge range.
	Ports PortStats
	// Traffic relayed by [Direction] and [Path]. Bytes count application
	// data: the UDP payload on the peer side, without TURN framing.
	Traffic [NumDirections][NumPaths]Counter
	// Drops holds packets dropped by reason (the Drop… constants). A reason
	// outside that set is counted under "other".
	Drops map[string]uint64
	// BindingRequests is the number of STUN Binding requests answered.
	BindingRequests uint64
	// Draining reports that the relay refuses new allocations while live
	// ones finish.
	Draining bool
	// TCPRelay describes the peer connections of RFC 6062 TCP allocations.
	TCPRelay TCPRelayStats
	// ProxyRefused counts the connections PROXY protocol listeners closed, by
	// [ProxyRefusal].
	ProxyRefused [NumProxyRefusals]uint64
}

// TCPRelayStats describes the peer data connections of RFC 6062 TCP allocations. Conns is
// a gauge; the rest are totals since the process started.
type TCPRelayStats struct {
	// Conns is the peer connections open: dialled for a Connect or accepted on a relayed
	// address, bound by a ConnectionBind or waiting for one.
	Conns int
	// BindTimeouts counts peer connections closed because no ConnectionBind claimed them
	// in time.
	BindTimeouts uint64
	// IdleCloses counts bound connection pairs closed idle.
	IdleCloses uint64
	// LimitRefused counts peer connections refused by a cap, by [TCPLimit].
	LimitRefused [NumTCPLimits]uint64
	// PolicyRefused counts peer connections the peer policy refused, by [TCPPolicyStage].
	PolicyRefused [NumTCPPolicyStages]uint64
}

// reset zeroes s for reuse, keeping Drops' storage.
func (s *Snapshot) reset() {
	drops := s.Drops
	clear(drops)
	*s = Snapshot{Drops: drops}
	if s.Drops == nil {
		s.Drops = make(map[string]uint64, len(dropReasons))
	}
}
