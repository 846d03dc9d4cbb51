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
	_ = conn.SetReadBuffer(socketBuffer) // best effort; the kernel caps it at rmem_max
	_ = conn.SetWriteBuffer(socketBuffer)
	return &echoPeer{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}, nil
}

// serve echoes until the socket is closed.
func (e *echoPeer) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		e.recv.Add(1)
		_, _ = e.conn.WriteToUDPAddrPort(buf[:n], from) // a failed echo is a lost packet, counted by the client
	}
}
