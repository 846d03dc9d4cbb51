//go:build !linux

package loadgen

import "net"

// setBuffers sets c's receive and send buffers to size bytes, as far as the system allows.
func setBuffers(c *net.UDPConn, size int) {
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(size)
}
