//go:build linux

package loadgen

import (
	"net"

	"golang.org/x/sys/unix"
)

// setBuffers sets c's receive and send buffers to size bytes: past net.core.rmem_max and
// wmem_max where the process may (SO_RCVBUFFORCE needs CAP_NET_ADMIN, which a network
// namespace's root has), else as far as those caps allow. Best effort: a smaller buffer
// shows up as kernel drops (kernelDrops), which the report counts.
func setBuffers(c *net.UDPConn, size int) {
	rc, err := c.SyscallConn()
	if err == nil {
		var rerr, serr error
		_ = rc.Control(func(fd uintptr) {
			rerr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		})
		if rerr == nil && serr == nil {
			return
		}
	}
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(size)
}
