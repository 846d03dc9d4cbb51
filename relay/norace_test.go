//go:build linux && !race

package relay

const raceEnabled = false
