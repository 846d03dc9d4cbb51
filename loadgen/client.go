package loadgen

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/pion/stun/v4"
)

// client is one simulated endpoint: a UDP socket, its allocation, and the
// packets it sends.
type client struct {
	// Static after construction.
	id      uint32
	r       *runner
	g       *group
	conn    *net.UDPConn
	user    string
	pass    string
	partner *client // ModePair only
	pattern []byte  // the payload template: header with id, then the pattern
	ctrl    chan []byte

	refreshFailed atomic.Bool // a refresh of this client failed (Report.RefreshFailedClients)

	// Set during setup, read-only once traffic starts.
	relayed netip.AddrPort
	peer    netip.AddrPort // echo peer, or partner's relayed address
	channel uint16
	tx      []byte      // owned by the group's pacer
	out     *dgramBatch // owned by the reader: the closed loop's probes (saturating runs)
	payOff  int         // payload offset inside tx and out's packets

	// Guarded by ctrlMu: one transaction at a time.
	ctrlMu sync.Mutex
	realm  string
	nonce  string
	key    stun.MessageIntegrity

	// Counters, written by the data path and read by progress and report.
	seq      atomic.Uint64 // probes sent (the last sequence number used)
	recv     atomic.Uint64 // own probes that came back intact
	pingsIn  atomic.Uint64 // partner's pings received and turned around (ModePair)
	corrupt  atomic.Uint64 // payloads that were not byte-exact or not ours
	sendErrs atomic.Uint64
	lastRecv uint64 // owned by the pacer (saturating runs)
	// resolved is the highest sequence number of a saturating run's probes that came back or
	// are presumed lost (replaces); raised by the reader and, at a refill, by the pacer.
	resolved  atomic.Uint64
	ctrlDrops atomic.Uint64
}

// group is a set of clients paced by one goroutine, whose round-trip
// samples share one histogram.
type group struct {
	clients []*client
	mu      sync.Mutex
	hist    *hdrhistogram.Histogram // guarded by mu
}

func (g *group) record(rttNS int64) {
	g.mu.Lock()
	_ = g.hist.RecordValue(min(max(rttNS, 1), histMax)) // in range by construction
	g.mu.Unlock()
}

// framePacket builds the packet this client sends, with the payload at
// c.payOff, for the run's mode.
func (c *client) framePacket() ([]byte, error) {
	size := len(c.pattern)
	switch c.r.cfg.Mode {
	case ModeDirect:
		c.payOff = 0
		return bytes.Clone(c.pattern), nil
	case ModeIndication:
		c.payOff = sendIndPayloadOff
		return buildSendIndication(c.peer, c.pattern)
	default:
		c.payOff = channelDataHeader
		b := make([]byte, channelDataLen(size, false))
		putChannelDataHeader(b, c.channel, size)
		copy(b[channelDataHeader:], c.pattern)
		return b, nil
	}
}

// send stamps the next sequence number and the time into pkt and writes it.
func (c *client) send(pkt []byte) {
	seq := c.seq.Add(1)
	stamp(pkt[c.payOff:], seq, c.r.now())
	if c.r.cfg.Mode == ModeIndication {
		// Vary the transaction ID so no server mistakes indications for retransmissions.
		copy(pkt[12:20], pkt[c.payOff+offSeq:c.payOff+offSeq+8])
	}
	if _, err := c.conn.Write(pkt); err != nil {
		c.sendErrs.Add(1)
	}
}

// readLoop demultiplexes everything that arrives on the client's socket
// until the socket is closed: ChannelData and Data indications to the data
// path, STUN responses to the control plane. It reads in batches (recvmmsg),
// and in a saturating run sends the probes that replace those that came back
// in one batch too (sendmmsg), so that the generator's system calls per probe
// do not bound the rate it measures.
func (c *client) readLoop() {
	in := newRecvBatch(batchSize)
	for {
		n, err := in.recv(c.conn)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				close(c.ctrl)
				return
			}
			continue // ICMP-induced ECONNREFUSED and the like: the socket still works
		}
		next := 0
		for i := range n {
			next += c.onFrame(in.bufs[i][:in.lens[i]])
		}
		for next > 0 { // more than a batch only when many were presumed lost at once
			k := min(next, len(c.out.bufs))
			c.sendProbes(k)
			next -= k
		}
	}
}

// onFrame handles one datagram that arrived on the client's socket and returns how many
// probes the closed loop sends for it (onPayload).
func (c *client) onFrame(frame []byte) int {
	if c.r.cfg.Mode == ModeDirect {
		return c.onPayload(frame, frame, false)
	}
	if isStun(frame) {
		data, err := parseDataIndication(frame)
		if err == nil {
			return c.onPayload(data, frame, true)
		}
		if errors.Is(err, errNotData) {
			c.deliverCtrl(frame)
		}
		return 0
	}
	if _, data, err := parseChannelData(frame); err == nil {
		return c.onPayload(data, frame, false)
	}
	c.corrupt.Add(1)
	return 0
}

// sendProbes stamps and sends the next n probes of a saturating run from the reader's own
// packets (c.out), in one batch.
func (c *client) sendProbes(n int) {
	first := c.seq.Add(uint64(n)) - uint64(n) + 1
	now := c.r.now()
	for i := range n {
		pkt := c.out.bufs[i]
		stamp(pkt[c.payOff:], first+uint64(i), now)
		if c.r.cfg.Mode == ModeIndication {
			copy(pkt[12:20], pkt[c.payOff+offSeq:c.payOff+offSeq+8])
		}
	}
	if failed := c.out.send(c.conn, n); failed > 0 {
		c.sendErrs.Add(uint64(failed))
	}
}

// deliverCtrl hands a copy of a STUN message to the waiting transaction, if
// any; control traffic is rare, so the copy does not matter.
func (c *client) deliverCtrl(frame []byte) {
	select {
	case c.ctrl <- bytes.Clone(frame):
	default:
		c.ctrlDrops.Add(1)
	}
}

// onPayload handles one received payload p inside frame. It returns how many
// probes a saturating run's closed loop sends for it (replaces); 0 at a paced
// load and after the send window.
func (c *client) onPayload(p, frame []byte, indication bool) int {
	pr, err := parsePayload(p)
	if err != nil || len(p) != len(c.pattern) {
		c.corrupt.Add(1)
		return 0
	}
	if c.r.cfg.Mode == ModePair && pr.kind == kindPing {
		// The partner's ping: check it and turn it around in place; the
		// frame's channel number is ours for the partner's relayed address.
		if c.partner == nil || pr.client != c.partner.id || indication ||
			!bytes.Equal(p[headerLen:], c.partner.pattern[headerLen:]) {
			c.corrupt.Add(1)
			return 0
		}
		c.pingsIn.Add(1)
		p[offKind] = kindPong
		if _, err := c.conn.Write(frame); err != nil {
			c.sendErrs.Add(1)
		}
		return 0
	}
	want := kindPing
	if c.r.cfg.Mode == ModePair {
		want = kindPong
	}
	if pr.kind != want || pr.client != c.id || !bytes.Equal(p[headerLen:], c.pattern[headerLen:]) {
		c.corrupt.Add(1)
		return 0
	}
	now := c.r.now()
	c.g.record(now - pr.sentNS)
	c.recv.Add(1)
	if c.r.cfg.Rate != 0 || now >= c.r.sendEndNS.Load() {
		return 0
	}
	return c.replaces(pr.seq)
}

// replaces returns how many probes replace the saturating run's probe seq that came back:
// itself and every probe sent before it that has not come back (presumed lost: one flow's
// datagrams keep their order), so that Window probes stay in flight whatever is lost; none
// for a probe already presumed lost, or replaced, that comes back late.
func (c *client) replaces(seq uint64) int {
	for {
		r := c.resolved.Load()
		if seq <= r {
			return 0
		}
		if c.resolved.CompareAndSwap(r, seq) {
			return int(seq - r)
		}
	}
}

// presumeLostUpTo marks every probe up to seq as resolved: the pacer refills a window that
// made no progress, and a probe of the old window that comes back after all is not replaced.
func (c *client) presumeLostUpTo(seq uint64) {
	for {
		r := c.resolved.Load()
		if seq <= r || c.resolved.CompareAndSwap(r, seq) {
			return
		}
	}
}
