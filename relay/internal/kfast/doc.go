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
// On loopback, where XDP cannot serve (lo's datagrams carry partial checksums that generic
// XDP's head moves break), the same relay compiled as a tc program, avedge_relay_tc, runs on
// lo's tcx ingress with the same maps: bpf_skb_adjust_room strips or inserts the header
// behind the IP header, and the relayed datagram is delivered on the spot (TCX_PASS); what it
// does not relay goes on to the next tcx program (TCX_NEXT). On any other interface the tc
// variant avedge_fwd_tc sends what it relays on by the route lookup and bpf_redirect to the
// out interface's egress: on a veth that needs no XDP program on the far end, which native
// XDP_TX does. It keeps the UDP header in place and moves the data, so a checksum a local
// sender left partial is completed right wherever the datagram goes next.
//
// Start here: New loads the programs and their maps (ErrUnavailable when the kernel or the
// process's capabilities do not allow BPF); Attach hooks one to an interface (native XDP, else
// the tc variant; ModeTCX: the tc variant); PutChannel, DeleteChannel, Permit and Revoke change the maps; Counters, Drops and
// Passes read them. Close detaches everything: links are bpf_links owned by this process's file
// descriptors and nothing is pinned, so a crash or a restart leaves no program attached.
package kfast
