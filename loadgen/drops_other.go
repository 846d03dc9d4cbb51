//go:build !linux

package loadgen

import "net"

// kernelDrops is 0 where the kernel's per-socket drop counter is not read.
func kernelDrops(*net.UDPConn) uint64 { return 0 }
