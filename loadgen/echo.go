package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

const (
	// peerBuffer is the echo peers' socket buffer size: each takes a group's whole traffic,
	// so it must ride out the scheduler's gaps on a loaded machine (tens of thousands of
	// audio-sized datagrams: seconds of a group's traffic) rather than drop what the server
	// relayed. The delay shows in the round trip; the memory is taken only while it waits.
	peerBuffer = 64 << 20
	// peerBatch is the datagrams an echo peer reads (recvmmsg) and echoes (sendmmsg) per
	// system call at most.
	peerBatch = 64
)

// echoPeer is the far end of channel and indication modes: a UDP socket (on
// Config.Local) that sends every datagram back to where it came from.
type echoPeer struct {
	conn *net.UDPConn
	addr netip.AddrPort
	recv atomic.Uint64
}

func newEchoPeer(local netip.Addr) (*echoPeer, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return nil, fmt.Errorf("loadgen: echo peer: %w", err)
	}
	setBuffers(conn, peerBuffer)
	return &echoPeer{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

// serve echoes until the socket is closed, in batches of up to peerBatch datagrams: what
// one wake-up finds queued is read and echoed with one system call each way.
func (e *echoPeer) serve() {
	pc := ipv4.NewPacketConn(e.conn)
	msgs := make([]ipv4.Message, peerBatch)
	bufs := make([][]byte, peerBatch)
	for i := range msgs {
		bufs[i] = make([]byte, 2048)
		msgs[i].Buffers = [][]byte{bufs[i]}
	}
	out := make([]ipv4.Message, peerBatch)
	for i := range out {
		out[i].Buffers = make([][]byte, 1)
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		e.recv.Add(uint64(n))
		for i := range n {
			out[i].Buffers[0] = bufs[i][:msgs[i].N]
			out[i].Addr = msgs[i].Addr
		}
		// A failed echo is a lost packet, counted by the client. WriteBatch stops at the
		// first datagram the kernel refuses; the rest of the batch is not retried.
		for sent := 0; sent < n; {
			k, err := pc.WriteBatch(out[sent:n], 0)
			if err != nil || k == 0 {
				break
			}
			sent += k
		}
	}
}
