//go:build linux

package loadgen

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// skMeminfoDrops is SK_MEMINFO_DROPS, the index of the drop counter in the array that
// getsockopt(SO_MEMINFO) fills (linux/sock_diag.h; x/sys/unix does not name it).
const (
	skMeminfoDrops = 8
	skMeminfoVars  = 9
)

// kernelDrops returns how many datagrams the kernel dropped at c since it was opened because
// its receive buffer was full (the socket's sk_drops, as /proc/net/udp shows it); 0 if the
// kernel does not say.
func kernelDrops(c *net.UDPConn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var mem [skMeminfoVars]uint32
	var drops uint64
	_ = rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(mem))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e == 0 && l >= (skMeminfoDrops+1)*4 {
			drops = uint64(mem[skMeminfoDrops])
		}
	})
	return drops
}
