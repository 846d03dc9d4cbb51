//go:build linux && race

package relay

// raceEnabled: the test binary runs under the race detector, which multiplies the memory a
// goroutine costs.
const raceEnabled = true
