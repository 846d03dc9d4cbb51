//go:build !linux

package loadgen

import (
	"errors"
	"net"
)

// startReaders starts a reader goroutine per client socket.
func (r *runner) startReaders() error {
	for _, c := range r.clients {
		r.readers.Go(c.readLoop)
	}
	return nil
}

// readLoop reads the client's socket on a goroutine of its own until the socket is closed
// (on Linux, a reader per group reads them all: reader_linux.go).
func (c *client) readLoop() {
	buf := make([]byte, 2048)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				close(c.ctrl)
				return
			}
			continue // ICMP-induced ECONNREFUSED and the like: the socket still works
		}
		c.handle(buf[:n])
	}
}
