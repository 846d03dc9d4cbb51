//go:build linux

package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/avedge/avedge/metrics"
)

// connLimit caps live stream connections in total and per source: an IPv4 address, or the
// /64 of an IPv6 address (one subscriber's LAN, as the Allocate rate limit counts it).
type connLimit struct {
	maxTotal, maxPerSource int // negative: unlimited. Static.

	mu    sync.Mutex
	total int                // live connections. Guarded by mu.
	bySrc map[netip.Addr]int // live connections per sourceKey. Guarded by mu.
}

func newConnLimit(maxTotal, maxPerSource int) *connLimit {
	return &connLimit{maxTotal: maxTotal, maxPerSource: maxPerSource, bySrc: map[netip.Addr]int{}}
}

// sourceKey is what connections from ip are counted under.
func sourceKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// connRefusal says which cap refused a connection.
type connRefusal int

const (
	connAdmitted connRefusal = iota
	connOverTotal
	connOverSource
)

// acquire takes a slot for a connection from ip, unless a cap is reached. Every admitted
// connection must be given back with release.
func (l *connLimit) acquire(ip netip.Addr) connRefusal {
	k := sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxTotal >= 0 && l.total >= l.maxTotal {
		return connOverTotal
	}
	n := l.bySrc[k]
	if l.maxPerSource >= 0 && n >= l.maxPerSource {
		return connOverSource
	}
	l.total++
	l.bySrc[k] = n + 1
	return connAdmitted
}

// release gives back the slot of a connection from ip.
func (l *connLimit) release(ip netip.Addr) {
	l.releaseFor(ip)
}

// acquireFor is acquire, or for an invalid ip (a connection whose client is not known yet:
// a PROXY protocol listener's, before the header) a slot of the total cap alone, to which
// acquireSource adds the per-source one. Either is given back with releaseFor, given the
// address acquired for (invalid: the total alone).
func (l *connLimit) acquireFor(ip netip.Addr) connRefusal {
	if ip.IsValid() {
		return l.acquire(ip)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxTotal >= 0 && l.total >= l.maxTotal {
		return connOverTotal
	}
	l.total++
	return connAdmitted
}

// acquireSource adds a per-source slot for ip to a connection holding a total one.
func (l *connLimit) acquireSource(ip netip.Addr) connRefusal {
	k := sourceKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.bySrc[k]
	if l.maxPerSource >= 0 && n >= l.maxPerSource {
		return connOverSource
	}
	l.bySrc[k] = n + 1
	return connAdmitted
}

// releaseFor gives back the slots a connection took for ip (invalid: the total one alone).
func (l *connLimit) releaseFor(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if !ip.IsValid() {
		return
	}
	k := sourceKey(ip)
	if n := l.bySrc[k] - 1; n > 0 {
		l.bySrc[k] = n
	} else {
		delete(l.bySrc, k)
	}
}

// live returns the number of live connections.
func (l *connLimit) live() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// streamStats counts what the stream listeners did, for the log and for tests. Atomics;
// written by the listeners' Accept and the connections' readers.
type streamStats struct {
	accepted     atomic.Uint64                           // connections accepted, admitted or not
	overTotal    atomic.Uint64                           // closed at once: MaxStreamConns reached
	overSource   atomic.Uint64                           // closed at once: MaxStreamConnsPerSource reached
	acceptErrors atomic.Uint64                           // Accept failures retried (EMFILE, ENFILE, ...)
	handshake    atomic.Uint64                           // closed: TLS handshake failed or timed out
	firstTimeout atomic.Uint64                           // closed: no complete valid frame within StreamFirstMessageTimeout
	idleTimeout  atomic.Uint64                           // closed: nothing received for StreamIdleTimeout
	writeTimeout atomic.Uint64                           // closed: a write blocked for StreamWriteTimeout
	tooLarge     atomic.Uint64                           // closed: a frame longer than pion reads
	proxyRefused atomic.Uint64                           // closed at once: a PROXY protocol listener's connection not from ProxyProtocolFrom
	proxyHeader  atomic.Uint64                           // closed: no valid PROXY protocol header within ProxyHeaderTimeout
	lastLog      atomic.Int64                            // unix nanoseconds of the last refusal logged
	lastProxyLog atomic.Int64                            // unix nanoseconds of the last PROXY protocol refusal logged
	proxyBy      [metrics.NumProxyRefusals]atomic.Uint64 // proxyRefused and proxyHeader by reason
}

// addTo copies the counts the metrics export to the snapshot.
func (st *streamStats) addTo(sn *metrics.Snapshot) {
	for i := range st.proxyBy {
		sn.ProxyRefused[i] = st.proxyBy[i].Load()
	}
}
