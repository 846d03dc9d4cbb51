package loadgen

import (
	"net/netip"
	"os"
)

func runtimePID() int { return os.Getpid() }

var netipLoopback = netip.MustParseAddrPort("127.0.0.1:5000")
