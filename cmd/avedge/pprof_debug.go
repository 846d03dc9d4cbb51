//go:build avedge_pprof

package main

// Built only with -tags avedge_pprof (profiling the control plane, see scripts/bench-control.sh
// PPROF=1): net/http/pprof on the loopback address in $AVEDGE_PPROF. The product binary has
// no profiling endpoint.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("AVEDGE_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
