// Package loadgen drives TURN servers with synthetic media traffic and measures
// what they cost: packets relayed, loss, round-trip latency percentiles and,
// given the server's pid, packets relayed per CPU-second of the server.
//
// Each simulated client owns one UDP socket on loopback (or on Config.Local), allocates on the
// server with long-term credentials (a minimal TURN client on pion/stun), and
// then exchanges stamped payloads in one of four modes:
//
//   - ModeChannel: ChannelBind to an in-process UDP echo peer; ChannelData both ways.
//   - ModeIndication: CreatePermission for the echo peer; Send and Data indications.
//   - ModePair: clients pair up and bind channels to each other's relayed
//     addresses; each side echoes the other's pings.
//   - ModeDirect: no relay at all; the client talks to the echo peer directly,
//     the baseline round trip.
//
// The data path allocates nothing per packet: every sender owns a pre-built
// packet whose sequence number and timestamp are patched in place, replies are
// turned around in the receive buffer, and pacing is one ticker per client
// group, never a goroutine per packet. Sockets are read in batches (recvmmsg on
// Linux); echo peers send a batch back with one sendmmsg, and in a saturating
// run a client sends the probes that replace those that came back in one
// batch too, so that the generator's system calls do not bound the rate.
//
// # What "relayed" means
//
// A relayed packet is one datagram the server received on one side and sent
// out of the other, counted where it arrives. A round trip is two relayed
// packets in channel and indication modes (client→peer, peer→client) and four
// in pair mode (each one-way trip crosses the server twice: in at the
// sender's allocation, out of its relay port into the receiver's relay port,
// out to the receiver). Report.RelayedPerCPUSecond divides that count by the
// server's utime+stime over the same window.
package loadgen
