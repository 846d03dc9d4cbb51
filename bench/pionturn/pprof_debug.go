//go:build avedge_pprof

package main

// Built only with -tags avedge_pprof (profiling the plain pion baseline beside avedge): net/http/pprof on the loopback
// address in $AVEDGE_PPROF.

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
