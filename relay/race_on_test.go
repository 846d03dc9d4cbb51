//go:build linux && race

package relay

// floodRate is the flood's rate in TestFloodKeptOffLiveCalls. The race detector makes the
// relay's per-packet work several times dearer, and the flood must stay within what the
// workers can read off the listener sockets on this machine's two cores (past that the
// kernel drops at the socket, flood and live packets alike, which no design inside the relay
// avoids); it still saturates pion's shards, which is what the test is about.
const floodRate = 5_000
