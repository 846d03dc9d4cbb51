package probe

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
)

// connectedPC is a connected UDP socket as the net.PacketConn pion/turn's
// client wants. Being connected, it learns of ICMP port unreachable
// (ECONNREFUSED), which an unconnected socket never sees; on it, it records
// the error and cancels the exchange so a refused server is reported at once
// instead of after every retransmission.
type connectedPC struct {
	*net.UDPConn
	cancel context.CancelFunc // Static after construction.

	mu  sync.Mutex
	err error // Guarded by mu.
}

func (c *connectedPC) refused(err error) {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.cancel()
}

func (c *connectedPC) sockErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ReadFrom reads the next datagram from the connected peer.
func (c *connectedPC) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := c.UDPConn.Read(p)
	if err != nil {
		c.refused(err)
		return 0, nil, err
	}
	return n, c.UDPConn.RemoteAddr(), nil
}

// WriteTo writes to the connected peer; to is ignored (it is the peer).
func (c *connectedPC) WriteTo(p []byte, _ net.Addr) (int, error) {
	n, err := c.UDPConn.Write(p)
	if err != nil {
		c.refused(err)
	}
	return n, err
}
