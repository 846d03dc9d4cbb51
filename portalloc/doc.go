// Package portalloc hands out relay ports from the configured edge port range
// (default 50000–59999), drawn uniformly at random from the ports that are
// free, and never one that is already held — by this relay or, as far as the
// kernel tells us at bind time, by another process.
//
// One Allocator serves one relay address (one IP address and family, or one
// listener if the relay splits its range). It owns no sockets: the caller
// passes a bind callback that opens the real socket, and the Allocator reads
// its error to tell "held elsewhere" (EADDRINUSE, EACCES) from a real failure.
//
// Each port is in exactly one of these states:
//
//	free         may be handed out
//	held         handed out by Acquire, AcquirePort, AcquireEven, Redeem or RedeemPort
//	reserved     the odd half of an EVEN-PORT pair, waiting for its token (RFC 8656)
//	quarantined  released recently; only handed out when nothing else is free
//	foreign      the kernel said another process holds it; retried after a cooldown
//
// Every operation is O(1) apart from lazy reclamation of expired quarantines,
// reservations and cooldowns, which is amortised O(1) (each port is reclaimed
// once per expiry) and runs on the next call with the injected clock: the
// Allocator starts no goroutines and no timers.
//
// The default edge range lies inside Linux's default ephemeral range
// (net.ipv4.ip_local_port_range = 32768 60999), so the kernel may give those
// ports to ordinary outgoing sockets. The Allocator copes (such ports become
// foreign and are skipped), but operators should reserve the range with
// net.ipv4.ip_local_reserved_ports=50000-59999 or move ip_local_port_range.
package portalloc
