// Package kfast is the relay's kernel fast path: an XDP program (bpf/kfast.c, compiled by
// bpf2go) that relays channel-bound TURN/UDP traffic without it entering user space, the
// loader that attaches it, and the maps that mirror the fast-path table. It imports no pion;
// the data plane (package dataplane) drives it through Offload.
//
//	client ─ChannelData─▶ NIC ─▶ XDP avedge_relay ─┬─ c2p hit ─▶ strip header ─▶ relay addr → peer (XDP_TX / redirect)
//	peer ───UDP────────▶ NIC ─▶                    ├─ p2c hit ─▶ add header ──▶ listen addr → client
//	                                               ├─ RFC drop (no permission, short ChannelData): XDP_DROP, counted
//	                                               └─ anything else: XDP_PASS ─▶ the stack ─▶ user-space loops
//
// Start here: New loads the program and its maps (ErrUnavailable when the kernel or the
// process's capabilities do not allow BPF); Attach hooks it to an interface (native XDP, else
// generic); PutChannel, DeleteChannel, Permit and Revoke change the maps; Counters, Drops and
// Passes read them. Close detaches everything: links are bpf_links owned by this process's file
// descriptors and nothing is pinned, so a crash or a restart leaves no program attached.
package kfast
