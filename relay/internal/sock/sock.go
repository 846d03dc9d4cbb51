//go:build linux

package sock

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SockaddrSize is the room a raw address needs: sockaddr_in6, the larger family.
const SockaddrSize = unix.SizeofSockaddrInet6

// RawAddr is a socket address in the kernel's own layout, built once per peer or client so
// that sending needs no conversion and no allocation. It is large enough for sockaddr_in6.
type RawAddr struct {
	buf [SockaddrSize]byte
	len uint32
}

// Set fills r with ap in sockaddr_in or sockaddr_in6 form (IPv4-mapped addresses are
// unmapped so that they can be sent from an AF_INET socket).
func (r *RawAddr) Set(ap netip.AddrPort) {
	r.buf = [SockaddrSize]byte{}
	addr := ap.Addr().Unmap()
	port := ap.Port()
	if addr.Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.buf[0]))
		sa.Family = unix.AF_INET
		sa.Port = htons(port)
		sa.Addr = addr.As4()
		r.len = unix.SizeofSockaddrInet4
		return
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.buf[0]))
	sa.Family = unix.AF_INET6
	sa.Port = htons(port)
	sa.Addr = addr.As16()
	r.len = unix.SizeofSockaddrInet6
}

// Ptr is the address of the sockaddr, for a msghdr's msg_name.
func (r *RawAddr) Ptr() *byte { return &r.buf[0] }

// Len is the sockaddr's length, for a msghdr's msg_namelen.
func (r *RawAddr) Len() uint32 { return r.len }

// Decode decodes a sockaddr filled by the kernel. It allocates nothing; an unknown family
// yields the zero AddrPort.
func Decode(b *[SockaddrSize]byte) netip.AddrPort {
	switch *(*uint16)(unsafe.Pointer(&b[0])) {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b[0]))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&b[0]))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
func ntohs(v uint16) uint16 { return v<<8 | v>>8 }

// UDPAddr converts for pion, which wants *net.UDPAddr (slow path only: it allocates).
func UDPAddr(ap netip.AddrPort) *net.UDPAddr { return net.UDPAddrFromAddrPort(ap) }

// AddrPortOf converts a net.Addr handed to us by pion, unmapping IPv4-mapped addresses.
func AddrPortOf(a net.Addr) (netip.AddrPort, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	if a == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// OpenUDP creates a non-blocking UDP socket bound to ap. reusePort sets SO_REUSEPORT so that
// one listen address can have a socket per worker.
func OpenUDP(ap netip.AddrPort, reusePort bool) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, err
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	// Media bursts: give the kernel room (it caps at net.core.{r,w}mem_max).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// LocalAddrPort reads back the address a socket is bound to.
func LocalAddrPort(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(v.Addr), uint16(v.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(v.Addr), uint16(v.Port)), nil
	}
	return netip.AddrPort{}, unix.EAFNOSUPPORT
}

// SendTo sends one datagram without allocating (the slow path and the flush of a single
// packet use it). It never blocks: a full socket buffer drops the datagram, as UDP may.
func SendTo(fd int, b []byte, to *RawAddr) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&to.buf[0])), uintptr(to.len))
	if e != 0 {
		return e
	}
	return nil
}

// Close closes fd, ignoring the error (a UDP socket's close reports nothing worth acting on).
func Close(fd int) { _ = unix.Close(fd) }
