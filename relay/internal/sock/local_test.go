//go:build linux

package sock

import (
	"net"
	"net/netip"
	"testing"
)

func TestLocalPrefixes(t *testing.T) {
	got, err := LocalPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	contains := func(ip netip.Addr) bool {
		for _, p := range got {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
	// Loopback is routed local as a whole /8, so an address no interface carries is local too.
	for _, s := range []string{"127.0.0.1", "127.3.2.1"} {
		if !contains(netip.MustParseAddr(s)) {
			t.Errorf("%s is not in the local prefixes %v", s, got)
		}
	}
	// Every interface address is local.
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP)
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			continue // routed local in a per-interface table with a zone; not a peer anyway
		}
		if !contains(ip) {
			t.Errorf("interface address %s is not in the local prefixes %v", ip, got)
		}
	}
	// A documentation address is not.
	if contains(netip.MustParseAddr("192.0.2.1")) {
		t.Errorf("192.0.2.1 is in the local prefixes %v", got)
	}
}
