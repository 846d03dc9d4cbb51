//go:build !linux

package loadgen

import "net"

// batchSys is empty: without recvmmsg and sendmmsg, a batch moves one datagram a call.
type batchSys struct{}

func (s *batchSys) init(*dgramBatch) {}

// recv receives one datagram on c (a connected socket).
func (b *dgramBatch) recv(c *net.UDPConn) (int, error) {
	n, err := c.Read(b.bufs[0])
	if err != nil {
		return 0, err
	}
	b.lens[0] = n
	return 1, nil
}

// send sends b.bufs[i][:b.lens[i]] for i < n on c one by one, to its connected address.
func (b *dgramBatch) send(c *net.UDPConn, n int) (failed int) {
	for i := range n {
		if _, err := c.Write(b.bufs[i][:b.lens[i]]); err != nil {
			failed++
		}
	}
	return failed
}
