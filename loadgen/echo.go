package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
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
	setBuffers(conn, socketBuffer)
	return &echoPeer{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

// serve echoes until the socket is closed: what one recvmmsg brings goes back, in place,
// with one sendmmsg (one datagram a call where the platform has no batches).
func (e *echoPeer) serve() {
	b := newRecvBatch(batchSize)
	for {
		n, err := b.recv(e.conn)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		e.recv.Add(uint64(n))
		_ = b.send(e.conn, n, true) // a failed echo is a lost packet, counted by the client
	}
}
