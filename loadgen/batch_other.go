//go:build !linux

package loadgen

import (
	"net"
	"net/netip"
)

// batchSys holds each datagram's source, for replies.
type batchSys struct{ from []netip.AddrPort }

func (s *batchSys) init(b *dgramBatch) { s.from = make([]netip.AddrPort, len(b.bufs)) }

// recv receives one datagram on c (no recvmmsg here).
func (b *dgramBatch) recv(c *net.UDPConn) (int, error) {
	n, from, err := c.ReadFromUDPAddrPort(b.bufs[0])
	if err != nil {
		return 0, err
	}
	b.lens[0], b.sys.from[0] = n, from
	return 1, nil
}

// send sends b.bufs[i][:b.lens[i]] for i < n one by one, back to each source if reply.
func (b *dgramBatch) send(c *net.UDPConn, n int, reply bool) (failed int) {
	for i := range n {
		var err error
		if reply {
			_, err = c.WriteToUDPAddrPort(b.bufs[i][:b.lens[i]], b.sys.from[i])
		} else {
			_, err = c.Write(b.bufs[i][:b.lens[i]])
		}
		if err != nil {
			failed++
		}
	}
	return failed
}

// setBuffers asks for bytes of receive and send buffer on c, best effort.
func setBuffers(c *net.UDPConn, bytes int) {
	_ = c.SetReadBuffer(bytes)
	_ = c.SetWriteBuffer(bytes)
}
