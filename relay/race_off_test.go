//go:build linux && !race

package relay

// floodRate is the flood's rate in TestFloodKeptOffLiveCalls (see race_on_test.go).
const floodRate = 25_000
