// Package policy owns the relay's pure admission decisions: which peers a
// client may reach through an allocation, how fast one source address may ask
// for allocations or collect 401 answers, how many bytes an allocation or a
// user may relay, and how many allocations a user and the whole relay may hold.
//
// It opens no socket, starts no goroutine and imports only the standard
// library. Every type is safe for concurrent use.
//
// # Peer policy
//
// A TURN relay is an open door into the network it sits in. The relay calls
// [Policy.Check] on every path that names a peer (CreatePermission,
// ChannelBind, Send indication, TCP Connect) before any packet leaves, and
// answers 403 (or drops the indication) with the returned [Reason] as the
// metric label. Check is allocation-free and does a handful of comparisons.
//
// The decision, in order:
//
//  1. Invalid or zone-scoped addresses are refused ([ReasonInvalid]).
//  2. The address is split into its components: an IPv4 address is its own
//     component; an IPv6 address that embeds IPv4 addresses (IPv4-mapped,
//     IPv4-compatible, NAT64, 6to4, Teredo server and client) yields each
//     embedded IPv4 address as a component.
//  3. If Deny contains the address as given or any component: [ReasonDenyList].
//  4. Each IPv4 component is classified by the built-in IPv4 table
//     (loopback, RFC 1918, CGNAT, link-local, Azure's WireServer, …); a
//     refused component refuses the address unless Allow contains that
//     IPv4 component.
//  5. Unless Allow contains the IPv6 address as given, the IPv6 address
//     itself is classified by the built-in IPv6 table (loopback,
//     link-local, ULA, multicast, documentation, anything outside 2000::/3
//     that is not a translation prefix, …).
//  6. If the address or any component is one of the host's own addresses
//     (Local) and not exempt (Own, loopback under AllowLoopback, or named
//     by a single-address Allow entry): [ReasonLocal].
//
// So Deny wins over everything; Allow only ever lifts the built-in ranges,
// each family's by entries of that family (an IPv6 entry such as a NAT64
// prefix never lifts the refusal of an IPv4 address it embeds); and the
// host's own addresses are never peers unless named one by one. A
// [Policy] is immutable: to reload, build a new one with [New] and swap it
// in (an atomic.Pointer).
//
// # Limits
//
// [Limiter] is a bounded table of per-source token buckets (Allocate requests,
// 401 answers). [Bucket] is a lock-free byte bucket for bandwidth caps on the
// hot path. [Quota] counts live allocations per user and in total. Time is
// always passed in by the caller as nanoseconds from any monotonic origin, so
// tests inject it and the hot path reads the clock once per batch.
package policy
