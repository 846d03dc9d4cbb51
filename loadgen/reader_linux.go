//go:build linux

package loadgen

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// readerEvents is how many ready sockets a group's reader takes per epoll_wait.
const readerEvents = 256

// groupReader reads every client socket of a group on one goroutine: an epoll instance
// (level-triggered) holds the sockets, and the runtime's netpoller waits on the epoll
// instance itself, so one wake-up serves every socket that is ready and each datagram costs
// one read. A goroutine per socket costs a wake-up, a read and a read that finds nothing per
// datagram: at a thousand clients × 50 packets/s that was the generator's own bound under a
// flood, not the server's.
type groupReader struct {
	clients []*client         // static; indexed by the epoll events' data
	conns   []syscall.RawConn // the clients' sockets, as clients
	ep      *os.File          // the epoll instance; Close ends run
	rc      syscall.RawConn   // ep's
}

func newGroupReader(clients []*client) (*groupReader, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("loadgen: reader: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("loadgen: reader: %w", err)
	}
	gr := &groupReader{clients: clients, ep: os.NewFile(uintptr(fd), "loadgen-epoll")}
	fail := func(err error) (*groupReader, error) {
		gr.ep.Close()
		return nil, err
	}
	for i, c := range clients {
		rc, err := c.conn.SyscallConn()
		if err != nil {
			return fail(fmt.Errorf("loadgen: reader: %w", err))
		}
		var addErr error
		if err := rc.Control(func(s uintptr) {
			addErr = unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, int(s), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)})
		}); err != nil {
			return fail(fmt.Errorf("loadgen: reader: %w", err))
		}
		if addErr != nil {
			return fail(fmt.Errorf("loadgen: reader: epoll_ctl: %w", addErr))
		}
		gr.conns = append(gr.conns, rc)
	}
	if gr.rc, err = gr.ep.SyscallConn(); err != nil {
		return fail(fmt.Errorf("loadgen: reader: %w", err))
	}
	return gr, nil
}

// run reads until close, then closes the clients' control channels.
func (gr *groupReader) run() {
	defer func() {
		for _, c := range gr.clients {
			close(c.ctrl)
		}
	}()
	events := make([]unix.EpollEvent, readerEvents)
	buf := make([]byte, 2048)
	for {
		n := 0
		if err := gr.rc.Read(func(fd uintptr) bool {
			var err error
			n, err = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (err != nil && err != unix.EINTR)
		}); err != nil {
			return // the epoll instance is closed: the run is over
		}
		for _, ev := range events[:n] {
			gr.readOne(int(ev.Fd), buf)
		}
	}
}

// readOne reads one datagram from client i's socket, if there is one: an epoll event that
// finds more waiting comes back in the next round (level-triggered).
func (gr *groupReader) readOne(i int, buf []byte) {
	var n int
	var rerr error
	if err := gr.conns[i].Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), buf)
		return true
	}); err != nil || rerr != nil {
		return // closed, nothing there, or an ICMP-induced ECONNREFUSED: the socket still works
	}
	gr.clients[i].handle(buf[:n])
}

// close ends run. Called once the clients' sockets are closed.
func (gr *groupReader) close() { _ = gr.ep.Close() }

// startReaders starts a reader per group for the clients' sockets.
func (r *runner) startReaders() error {
	for _, g := range r.groups {
		gr, err := newGroupReader(g.clients)
		if err != nil {
			return err
		}
		r.endReads = append(r.endReads, gr.close)
		r.readers.Go(gr.run)
	}
	return nil
}
