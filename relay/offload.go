//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/kfast"
)

// The kernel fast path (package kfast): with data path auto or offload, channel-bound UDP
// traffic is relayed in the kernel on the interfaces that carry the relay's UDP listen
// addresses and relay addresses (native XDP where the driver has it; on loopback, a veth or a
// driver without native XDP, the tc variant on tcx ingress: attachMode), and the workers relay
// the rest. The fast-path table drives
// the program's maps (dataplane/kernel.go).

// kernelPlan is which interfaces the program goes on, and why an address is not served.
type kernelPlan struct {
	ifaces  []net.Interface    // to attach to (loopback: the tc variant)
	modes   []kfast.Mode       // by ifaces' index: how to attach
	modeWhy []string           // by ifaces' index: why that way
	lis     []netip.AddrPort   // by listener ID: the served listen address, or invalid
	why     []string           // why something is not served
	served  map[int]bool       // by interface index
	byAddr  map[netip.Addr]int // interface index of each local address
}

// planKernel finds the interfaces of the UDP listen and relay addresses. An address on
// loopback is served by the tc variant on tcx ingress (XDP cannot serve lo), with data path
// auto as with offload: it relays only between loopback addresses and hands everything else
// to the next tcx program (TCX_NEXT), so it shares lo with other relays. An address on another
// interface is served when, unless gateway is set, that interface forwards its family (the
// XDP program's route lookup needs it). A wildcard listener is served on
// the relay addresses' interfaces, with route lookups (the program answers from the route's
// preferred source, as the listener's socket does), so not in gateway mode. How each
// interface is attached (a veth by the tc variant: its far end would need an XDP program for
// native XDP's relayed frames) is attachMode's choice.
func (s *Server) planKernel(gateway bool) (*kernelPlan, error) {
	p := &kernelPlan{served: map[int]bool{}, byAddr: map[netip.Addr]int{}, lis: make([]netip.AddrPort, len(s.listeners))}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	byIndex := map[int]net.Interface{}
	for _, ifi := range ifs {
		byIndex[ifi.Index] = ifi
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					p.byAddr[ip.Unmap()] = ifi.Index
				}
			}
		}
	}
	serve := func(what string, ip netip.Addr) bool {
		ip = ip.Unmap()
		idx, ok := p.byAddr[ip]
		if !ok {
			p.why = append(p.why, fmt.Sprintf("%s %s: on no interface", what, ip))
			return false
		}
		ifi := byIndex[idx]
		isLoop := ifi.Flags&net.FlagLoopback != 0
		switch {
		case isLoop:
		case !gateway:
			v4, v6 := kfast.Forwarding(ifi.Name)
			if (ip.Is4() && !v4) || (ip.Is6() && !v6) {
				fam := "ipv4"
				if ip.Is6() {
					fam = "ipv6"
				}
				p.why = append(p.why, fmt.Sprintf("%s %s: forwarding is off on %s (sysctl net.%s.conf.%s.forwarding=1, or offload-gateway)", what, ip, ifi.Name, fam, ifi.Name))
				return false
			}
		}
		if !p.served[idx] {
			p.served[idx] = true
			p.ifaces = append(p.ifaces, ifi)
			m, why := attachMode(ifi, kfast.Driver(ifi.Name), s.cfg.OffloadAttach)
			p.modes = append(p.modes, m)
			p.modeWhy = append(p.modeWhy, why)
		}
		return true
	}
	for _, ips := range s.relayIPs {
		for _, ip := range ips {
			serve("relay address", ip)
		}
	}
	for _, g := range s.listeners {
		switch ip := g.addr.Addr(); {
		case !ip.IsUnspecified():
			if serve("listener", ip) {
				p.lis[g.ID] = g.addr
			}
		case gateway:
			p.why = append(p.why, fmt.Sprintf("listener %s: a wildcard address with offload-gateway (give the concrete one)", g.addr))
		case len(p.ifaces) == 0:
			p.why = append(p.why, fmt.Sprintf("listener %s: a wildcard address, and no relay address is served", g.addr))
		case p.onlyLoopback():
			p.why = append(p.why, fmt.Sprintf("listener %s: a wildcard address, which the tc variant on loopback cannot answer from (give 127.0.0.1 or ::1)", g.addr))
		default:
			p.lis[g.ID] = g.addr
		}
	}
	return p, nil
}

// attachMode is how the program goes on interface ifi (whose driver is driver) with attach
// choice a, and why.
//
// On a veth, native XDP sends what it relays back out (XDP_TX, or a redirect into another
// veth) into the far end's NAPI context, which that end has only with an XDP program of its
// own; the relay cannot see the far end (in another namespace, a container's host) to check,
// and guessing wrong loses every channel packet. The tc variant sends through the veth's own
// transmit path and needs nothing there. So auto takes tc there.
func attachMode(ifi net.Interface, driver string, a OffloadAttach) (kfast.Mode, string) {
	switch {
	case ifi.Flags&net.FlagLoopback != 0:
		return kfast.ModeTCX, "loopback: XDP cannot serve lo"
	case a == OffloadAttachTC:
		return kfast.ModeTCX, "offload-attach tc"
	case a == OffloadAttachXDP:
		return kfast.ModeNative, "offload-attach xdp"
	case a == OffloadAttachXDPGeneric:
		return kfast.ModeGeneric, "offload-attach xdp-generic"
	case driver == "veth":
		return kfast.ModeTCX, "veth: native XDP would need an XDP program on its far end, which the relay cannot see"
	}
	return kfast.ModeAuto, "native XDP where the driver has it, else tc"
}

// onlyLoopback reports whether every interface to attach to is a loopback one.
func (p *kernelPlan) onlyLoopback() bool {
	for _, ifi := range p.ifaces {
		if ifi.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}

// startKernel sets the kernel fast path up for data path dp (auto or offload). With auto, it
// logs why it does not run instead of failing.
func (s *Server) startKernel(dp DataPath) error {
	fail := func(err error) error {
		if dp == DataPathOffload {
			return fmt.Errorf("relay: data path offload: %w (use data path auto to fall back to user space)", err)
		}
		s.log.Info("kernel fast path off; relaying in user space", "data-path", dpName(dp), "reason", err.Error())
		return nil
	}
	plan, err := s.planKernel(s.cfg.OffloadGateway)
	if err != nil {
		return fail(err)
	}
	served := 0
	for _, a := range plan.lis {
		if a.IsValid() {
			served++
		}
	}
	if served == 0 || len(plan.ifaces) == 0 {
		return fail(fmt.Errorf("no UDP listener it can serve: %s", strings.Join(plan.why, "; ")))
	}
	// Senders on this host reach a veth with their UDP checksums left to a NIC it does not
	// have: the XDP program computes them from scratch there (the tc variant's helpers
	// complete them from where the sender left them).
	full := false
	for i, ifi := range plan.ifaces {
		full = full || (plan.modes[i] != kfast.ModeTCX && kfast.Driver(ifi.Name) == "veth")
	}
	off, err := kfast.New(kfast.Config{Gateway: s.cfg.OffloadGateway, FullChecksum: full})
	if err != nil {
		return fail(err)
	}
	var attached []string
	for i, ifi := range plan.ifaces {
		mode, err := off.Attach(ifi.Index, plan.modes[i])
		if err != nil {
			off.Close()
			return fail(err)
		}
		how, why := mode.String()+" XDP", plan.modeWhy[i]
		if mode == kfast.ModeTCX {
			how = "tc variant, tcx ingress"
			if plan.modes[i] == kfast.ModeAuto {
				why += ": the driver has no native XDP"
			}
		}
		attached = append(attached, ifi.Name+" ("+how+": "+why+")")
	}
	s.kernel = off
	s.kmirror = dataplane.NewKernel(off, plan.lis, s.log)
	s.fast.SetKernel(s.kmirror)
	args := []any{"data-path", dpName(dp), "interfaces", strings.Join(attached, ", "), "gateway-mode", s.cfg.OffloadGateway, "full-checksum", full}
	if len(plan.why) > 0 {
		args = append(args, "not-served", strings.Join(plan.why, "; "))
	}
	if dp == DataPathAuto {
		// auto attaches to this host's interfaces, lo included, unasked: say how not to.
		args = append(args, "turn-off", "data-path io_uring (or epoll) relays everything in user space and attaches nothing")
	}
	s.log.Info("kernel fast path on: channel-bound UDP relayed in the kernel", args...)
	return nil
}

// dpName is dp as an operator writes it.
func dpName(dp DataPath) string {
	if dp == DataPathAuto {
		return "auto"
	}
	return string(dp)
}

// closeKernel detaches the program and frees its maps.
func (s *Server) closeKernel() error {
	if s.kernel == nil {
		return nil
	}
	if passes, err := s.kernel.Passes(); err == nil {
		var args []any
		for r, n := range passes {
			if n > 0 {
				args = append(args, kfast.PassReason(r).String(), n)
			}
		}
		s.log.Info("kernel fast path closing; packets it left to user space, by reason", args...)
	}
	err := s.kmirror.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("relay: kernel fast path: %w", err)
	}
	return nil
}
