// Command xdppass attaches an XDP program that passes every frame to an interface, in native
// mode, and holds it until it is interrupted (the link goes with the process: nothing is
// pinned). make bench-relay runs it on the generator's end of the veth pair: a frame the
// relay's XDP program sends back out of its own end (XDP_TX) is received through the far
// end's NAPI context, which a veth has only while an XDP program is attached to it (GRO on
// the far end was not enough on the kernels tried).
//
//	xdppass IFACE
//
// It prints "attached" once the program is on, and exits 1 with the reason when it cannot
// attach (no BPF, no CAP_BPF and CAP_NET_ADMIN, no such interface).
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: xdppass IFACE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "xdppass:", err)
		os.Exit(1)
	}
}

func run(name string) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load the pass program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
	if err != nil {
		return fmt.Errorf("attach to %s in native mode: %w", name, err)
	}
	defer l.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	fmt.Println("attached")
	<-sig
	return nil
}
