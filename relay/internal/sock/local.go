//go:build linux

package sock

import (
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"
)

// LocalPrefixes returns the host's own addresses as the kernel routes them: every route of
// type local (RTN_LOCAL) in any table, in the network namespace of the caller. That is each
// interface address, secondary addresses and VIPs, and whole ranges routed to the host
// ("AnyIP", e.g. 127.0.0.0/8 or `ip route add local 198.51.100.0/24 dev lo`), which
// net.InterfaceAddrs does not list. It asks the kernel over a NETLINK_ROUTE socket.
func LocalPrefixes() ([]netip.Prefix, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETROUTE, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("sock: read routes over netlink: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("sock: parse netlink routes: %w", err)
	}
	var out []netip.Prefix
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWROUTE || len(m.Data) < syscall.SizeofRtMsg {
			continue
		}
		rt := (*syscall.RtMsg)(unsafe.Pointer(&m.Data[0]))
		if rt.Type != syscall.RTN_LOCAL {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Attr.Type != syscall.RTA_DST {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.Value)
			if !ok {
				continue
			}
			if p, err := ip.Unmap().Prefix(int(rt.Dst_len)); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}
