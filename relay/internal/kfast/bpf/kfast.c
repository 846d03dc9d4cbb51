// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// avedge's kernel fast path: relays channel-bound TURN/UDP traffic in XDP (RFC 8656 §12), and
// in tc: on loopback (avedge_relay_tc, below), and on any other interface where XDP_TX would
// need a program on a veth's far end (avedge_fwd_tc, further below).
//
//   client → peer: a ChannelData message that a client sent to a listen address, on a channel
//                  bound to a UDP peer, leaves as a plain UDP datagram relay address → peer.
//   peer → client: a datagram that a peer sent to a relay address, from the peer address a
//                  channel is bound to, leaves as ChannelData listen address → client.
//
// The maps mirror user space's fast-path table (relay/internal/dataplane/table.go) and change
// only when it does. Anything the program does not relay itself goes up the stack unchanged
// (XDP_PASS) to the user-space loops: STUN, indications, unknown 5-tuples, fragments, IP options
// or IPv6 extension headers, mixed families, a datagram the route or the MTU does not let out
// directly. A packet the RFC says to discard, for a 5-tuple the maps know, is dropped here and
// counted by reason.
//
// Checksums are updated incrementally (RFC 1624) from the arriving ones, so the payload is never
// read: the words that leave the UDP checksum (old addresses, ports, length, the ChannelData
// header and any padding) are subtracted and the new ones added. IPv4's header checksum is
// recomputed over its 20 bytes.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define TTL 64 // as a datagram the relay sends itself
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define NEXTHDR_FRAGMENT 44

// Addresses are 16 bytes; IPv4 ones are IPv4-mapped (::ffff:a.b.c.d).
struct c2p_key {
	__u8 client_ip[16];
	__u8 lis_ip[16];
	__be16 client_port;
	__be16 lis_port;
	__u16 chan; // host order
	__u16 pad;
};

struct c2p_val {
	__u8 relay_ip[16];
	__u8 peer_ip[16];
	__be16 relay_port;
	__be16 peer_port;
	__u32 slot; // the allocation's counters and permissions
};

struct p2c_key {
	__u8 peer_ip[16];
	__u8 relay_ip[16];
	__be16 peer_port;
	__be16 relay_port;
};

struct p2c_val {
	__u8 lis_ip[16];
	__u8 client_ip[16];
	__be16 lis_port;
	__be16 client_port;
	__u16 chan; // host order
	__u16 pad;
	__u32 slot;
};

struct perm_key {
	__u32 slot;
	__u8 peer_ip[16];
};

struct counters {
	__u64 c2p_packets;
	__u64 c2p_bytes; // application data, as user space counts it
	__u64 p2c_packets;
	__u64 p2c_bytes;
};

// Why a packet was dropped; the Go side names them (kfast.go).
enum drop_reason {
	DROP_NO_PERMISSION, // bound channel, but the peer IP's permission is gone (RFC 8656 §12.4)
	DROP_MALFORMED,     // datagram shorter than the ChannelData length says (§12.5)
	DROP_QUOTA,         // over the allocation's bandwidth cap (max-bps)
	NUM_DROPS,
};

// Why a packet the maps know went up the stack instead.
enum pass_reason {
	PASS_NO_ENTRY,   // UDP to this host that no entry names (most traffic: not ours)
	PASS_FRAGMENT,   // IPv4 fragment or IPv6 extension header
	PASS_IP_OPTIONS, // IPv4 header longer than 20 bytes
	PASS_FAMILY,     // entry across families (RFC 6156): user space translates
	PASS_PADDING,    // more than 3 bytes after the ChannelData data
	PASS_MTU,        // larger than the egress MTU once the header is added
	PASS_NO_ROUTE,   // no direct route or neighbour yet (user space sends, the kernel resolves)
	PASS_CSUM,       // IPv6 datagram without a UDP checksum
	NUM_PASSES,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct c2p_key);
	__type(value, struct c2p_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct p2c_key);
	__type(value, struct p2c_val);
} p2c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct perm_key);
	__type(value, __u8);
} perms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

// An allocation's bandwidth cap: a token bucket of burst bytes refilled at rate bytes per
// second, shared by both directions and every CPU (hence the lock). rate 0: unlimited.
struct bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens;
	__u64 last; // bpf_ktime_get_ns of the last refill
	__u64 rate;
	__u64 burst;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_DROPS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NUM_PASSES);
	__type(key, __u32);
	__type(value, __u64);
} passes SEC(".maps");

static __always_inline void bump(void *map, __u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(map, &reason);
	if (v)
		*v += 1;
}

static __always_inline int pass(__u32 reason)
{
	bump(&passes, reason);
	return XDP_PASS;
}

static __always_inline int drop(__u32 reason)
{
	bump(&drops, reason);
	return XDP_DROP;
}

// Ones' complement arithmetic on 16-bit words as they lie in memory (the sum is the same in
// either byte order, so nothing is swapped).
static __always_inline __u64 add16(__u64 acc, __u16 w) { return acc + w; }
static __always_inline __u64 sub16(__u64 acc, __u16 w) { return acc + (__u16)~w; }

// add_words and sub_words add (subtract) the n/2 words at p, n 2 or 4 (a constant once
// inlined): written out, so that no pointer is offset by a loop counter (the verifier refuses
// that to programs loaded without CAP_PERFMON). Longer runs go through bpf_csum_diff.
static __always_inline __u64 add_words(__u64 acc, const void *p, int n)
{
	const __u16 *w = p;
	acc += w[0];
	if (n > 2)
		acc += w[1];
	return acc;
}

static __always_inline __u64 sub_words(__u64 acc, const void *p, int n)
{
	const __u16 *w = p;
	acc += (__u16)~w[0];
	if (n > 2)
		acc += (__u16)~w[1];
	return acc;
}

// pad_word is byte b as a 16-bit word loaded from memory: the first byte of the word if odd
// is 0, else the second.
static __always_inline __u16 pad_word(__u8 b, int odd)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return odd ? (__u16)b << 8 : b;
#else
	return odd ? b : (__u16)b << 8;
#endif
}

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

static __always_inline void ip4_csum(struct iphdr *ip)
{
	ip->check = 0;
	ip->check = ~fold((__u32)bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
}

static const __u8 v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static __always_inline int is_mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

// is_wildcard reports whether a is 0.0.0.0 (IPv4-mapped) or ::.
static __always_inline int is_wildcard(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	return w[0] == 0 && w[1] == 0 && (w[2] == 0 || w[2] == bpf_htonl(0xffff)) && w[3] == 0;
}

static __always_inline void map4(__u8 *dst, __be32 a)
{
	__builtin_memcpy(dst, v4mapped, 12);
	__builtin_memcpy(dst + 12, &a, 4);
}

// Header lengths by family.
#define L3(v6) ((v6) ? sizeof(struct ipv6hdr) : sizeof(struct iphdr))
#define HDRS(v6) (sizeof(struct ethhdr) + L3(v6) + sizeof(struct udphdr))

// The headers of one packet, copied out so that they can be written back after the head
// moves.
struct hdrs {
	struct ethhdr eth;
	union {
		struct iphdr ip4;
		struct ipv6hdr ip6;
	};
	struct udphdr udp;
};

// How the next hop is found, set by the loader.
//
// gateway == 0: by the kernel's routing table and neighbours (bpf_fib_lookup, as if the packet
// were forwarded from the interface it arrived on, so a peer behind another interface is
// reached by redirect), which needs forwarding enabled on the interface the program is attached
// to (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.forwarding): the helper refuses otherwise.
// gateway == 1: back to the link address the packet came from (XDP_TX), right when every client
// and peer is reached through one gateway, as on most cloud and edge hosts; mtu bounds what
// leaves.
volatile const __u8 gateway = 0;
// full_csum: compute each relayed datagram's UDP checksum from scratch (reading its data)
// instead of updating the arriving one. Needed where senders on the same host reach the
// relay over a veth: their datagrams arrive with the checksum not yet computed
// (CHECKSUM_PARTIAL: the field holds only the pseudo-header's sum), which an update would
// carry over.
volatile const __u8 full_csum = 0;
volatile const __u16 mtu = 1500;

// route finds the egress device and MAC addresses for src → dst with an IP packet of tot_len
// bytes. It returns the device, or 0 (with *why set) if the packet must go up the stack.
// ctx is the program's context (XDP or skb) and in_if the interface the packet arrived on.
static __always_inline int route(void *ctx, __u32 in_if, int v6, __u8 *src, const __u8 *dst,
				 __be16 sport, __be16 dport, __u16 tot_len, struct hdrs *h, __u32 *why)
{
	// A wildcard source (a listener on 0.0.0.0 or ::) is the route's preferred source, as
	// for the listener's own socket.
	int any = is_wildcard(src);
	if (gateway) {
		if (any) {
			*why = PASS_NO_ROUTE;
			return 0;
		}
		if (tot_len > mtu) {
			*why = PASS_MTU;
			return 0;
		}
		__u8 mac[ETH_ALEN];
		__builtin_memcpy(mac, h->eth.h_dest, ETH_ALEN);
		__builtin_memcpy(h->eth.h_dest, h->eth.h_source, ETH_ALEN);
		__builtin_memcpy(h->eth.h_source, mac, ETH_ALEN);
		return in_if;
	}
	struct bpf_fib_lookup p = {};
	p.l4_protocol = IPPROTO_UDP;
	p.sport = sport;
	p.dport = dport;
	p.tot_len = tot_len;
	p.ifindex = in_if;
	if (v6) {
		p.family = AF_INET6;
		__builtin_memcpy(p.ipv6_src, src, 16);
		__builtin_memcpy(p.ipv6_dst, dst, 16);
	} else {
		p.family = AF_INET;
		__builtin_memcpy(&p.ipv4_src, src + 12, 4);
		__builtin_memcpy(&p.ipv4_dst, dst + 12, 4);
	}
	long rc = bpf_fib_lookup(ctx, &p, sizeof(p), any ? BPF_FIB_LOOKUP_SRC : 0);
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		*why = PASS_MTU;
		return 0;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		*why = PASS_NO_ROUTE;
		return 0;
	}
	if (any) {
		if (v6)
			__builtin_memcpy(src, p.ipv6_src, 16);
		else
			__builtin_memcpy(src + 12, &p.ipv4_src, 4);
	}
	__builtin_memcpy(h->eth.h_dest, p.dmac, ETH_ALEN);
	__builtin_memcpy(h->eth.h_source, p.smac, ETH_ALEN);
	return p.ifindex;
}

static __always_inline int send(struct xdp_md *ctx, int ifindex)
{
	if ((__u32)ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

// set_addrs writes src → dst into the IP header and sets its length, hop limit and checksum.
static __always_inline void set_ip(struct hdrs *h, int v6, const __u8 *src, const __u8 *dst, __u16 l4len)
{
	if (v6) {
		__builtin_memcpy(&h->ip6.saddr, src, 16);
		__builtin_memcpy(&h->ip6.daddr, dst, 16);
		h->ip6.payload_len = bpf_htons(l4len);
		h->ip6.hop_limit = TTL;
	} else {
		__builtin_memcpy(&h->ip4.saddr, src + 12, 4);
		__builtin_memcpy(&h->ip4.daddr, dst + 12, 4);
		h->ip4.tot_len = bpf_htons(l4len + sizeof(struct iphdr));
		h->ip4.ttl = TTL;
		ip4_csum(&h->ip4);
	}
}

// csum_readdr subtracts the pseudo-header addresses, ports and length (twice: pseudo-header
// and UDP header) of h from acc and adds src, dst, sport, dport and ulen.
static __always_inline __u64 csum_readdr(__u64 acc, struct hdrs *h, int v6, const __u8 *src,
					 const __u8 *dst, __be16 sport, __be16 dport, __be16 ulen)
{
	// The addresses lie side by side in both IP headers: one bpf_csum_diff from the old pair
	// to the new.
	__u8 addrs[32];
	if (v6) {
		__builtin_memcpy(addrs, src, 16);
		__builtin_memcpy(addrs + 16, dst, 16);
		acc += (__u32)bpf_csum_diff((__be32 *)&h->ip6.saddr, 32, (__be32 *)addrs, 32, 0);
	} else {
		__builtin_memcpy(addrs, src + 12, 4);
		__builtin_memcpy(addrs + 4, dst + 12, 4);
		acc += (__u32)bpf_csum_diff((__be32 *)&h->ip4.saddr, 8, (__be32 *)addrs, 8, 0);
	}
	acc = sub16(acc, h->udp.source);
	acc = sub16(acc, h->udp.dest);
	acc = sub16(acc, h->udp.len);
	acc = sub16(acc, h->udp.len);
	acc = add16(acc, sport);
	acc = add16(acc, dport);
	acc = add16(acc, ulen);
	acc = add16(acc, ulen);
	return acc;
}

static __always_inline __u16 csum_final(__u64 acc)
{
	__u16 c = ~fold(acc);
	return c ? c : 0xffff;
}

static __always_inline void count(__u32 slot, int c2p, __u64 bytes)
{
	struct counters *c = bpf_map_lookup_elem(&stats, &slot);
	if (!c)
		return;
	if (c2p) {
		c->c2p_packets++;
		c->c2p_bytes += bytes;
	} else {
		c->p2c_packets++;
		c->p2c_bytes += bytes;
	}
}

// over reports whether n more bytes exceed slot's cap (and, if not, takes them).
static __always_inline int over(__u32 slot, __u64 n)
{
	struct bucket *b = bpf_map_lookup_elem(&buckets, &slot);
	if (!b || !b->rate)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	int refused = 0;
	bpf_spin_lock(&b->lock);
	__u64 el = now - b->last;
	if (now < b->last)
		el = 0;
	if (el > 1000000000ULL) // a second refills a full bucket at most (burst = one second's worth)
		el = 1000000000ULL;
	__u64 add = b->rate * el / 1000000000ULL;
	__u64 t = b->tokens;
	if (add) { // else the time is kept for the next refill
		t += add;
		b->last = now;
	}
	if (t > b->burst)
		t = b->burst;
	if (t < n)
		refused = 1;
	else
		t -= n;
	b->tokens = t;
	bpf_spin_unlock(&b->lock);
	return refused;
}

#define MAX_DATA 1536 // largest datagram data full_csum sums; larger ones go to the stack

// load_bytes is bpf_skb_load_bytes for an skb (skb set: a tc program's), bpf_xdp_load_bytes
// for an XDP buffer. skb is a constant at every call, so the branch and the other program
// type's helper are compiled out.
static __always_inline long load_bytes(void *ctx, int skb, __u32 off, void *to, __u32 len)
{
	return skb ? bpf_skb_load_bytes(ctx, off, to, len) : bpf_xdp_load_bytes(ctx, off, to, len);
}

// data_sum returns the ones' complement sum (unfolded, as bpf_csum_diff keeps it) of the n
// bytes at packet offset off, n < MAX_DATA + 64, read in chunks (unrolled: the verifier
// refuses this loop to a program loaded without CAP_PERFMON). The bytes are taken as words from off, which must be even relative to the
// checksummed data's start; a last odd byte is the first of its word. It returns -1 if the
// bytes cannot be read.
static __always_inline __s64 data_sum(void *ctx, int skb, __u32 off, __u32 n)
{
	__u8 buf[64];
	__u32 acc = 0;
#pragma unroll
	for (int i = 0; i < MAX_DATA / 64; i++) {
		if (n >= 64) {
			if (load_bytes(ctx, skb, off, buf, 64))
				return -1;
			acc = bpf_csum_diff(NULL, 0, (__be32 *)buf, 64, acc);
			off += 64;
			n -= 64;
		}
	}
#define TAIL(k)                                                                                    \
	if (n >= k) {                                                                              \
		if (load_bytes(ctx, skb, off, buf, k))                                     \
			return -1;                                                                 \
		acc = bpf_csum_diff(NULL, 0, (__be32 *)buf, k, acc);                               \
		off += k;                                                                          \
		n -= k;                                                                            \
	}
	TAIL(32)
	TAIL(16)
	TAIL(8)
	TAIL(4)
#undef TAIL
	__u64 s = acc;
	if (n >= 2) {
		if (load_bytes(ctx, skb, off, buf, 2))
			return -1;
		s += *(__u16 *)buf;
		off += 2;
		n -= 2;
	}
	if (n == 1) {
		if (load_bytes(ctx, skb, off, buf, 1))
			return -1;
		s += pad_word(buf[0], 0);
	}
	return fold(s);
}

// full_udp_csum is the UDP checksum of a datagram src → dst with UDP header u (its check
// field ignored), then extra (n_extra bytes, 0 or 4), then data whose sum is dsum.
static __always_inline __u16 full_udp_csum(int v6, const __u8 *src, const __u8 *dst,
					   const struct udphdr *u, const void *extra, int n_extra,
					   __u64 dsum)
{
	__u8 addrs[32];
	__u64 acc;
	if (v6) {
		__builtin_memcpy(addrs, src, 16);
		__builtin_memcpy(addrs + 16, dst, 16);
		acc = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)addrs, 32, 0);
	} else {
		__builtin_memcpy(addrs, src + 12, 4);
		__builtin_memcpy(addrs + 4, dst + 12, 4);
		acc = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)addrs, 8, 0);
	}
	acc += bpf_htons(IPPROTO_UDP);
	acc += u->len; // pseudo-header
	acc += u->source;
	acc += u->dest;
	acc += u->len;
	if (n_extra)
		acc = add_words(acc, extra, 4);
	return csum_final(acc + dsum);
}

static __always_inline int permitted(__u32 slot, const __u8 *peer)
{
	struct perm_key k = {.slot = slot};
	__builtin_memcpy(k.peer_ip, peer, 16);
	return bpf_map_lookup_elem(&perms, &k) != NULL;
}

// client_to_peer relays the ChannelData message after headers h (ulen: its UDP length) by
// entry v: it strips the header and any padding and readdresses it relay → peer.
//
// RFC 8656 §12.5: "If the ChannelData message is received in a UDP datagram, and if the UDP
// datagram is too short to contain the claimed length of the ChannelData message (i.e., the
// UDP datagram is shorter than [Length field + 4]), then the message is silently discarded."
// §12.4: the server "MUST also check that there is a permission installed for the peer's IP
// address; if not, the message is silently discarded."
static __always_inline int client_to_peer(struct xdp_md *ctx, int v6, struct hdrs *h,
					  const struct c2p_val *v, __u16 ulen)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u8 *cd = data + HDRS(v6);
	if ((void *)(cd + 4) > end)
		return XDP_PASS;
	__u16 plen = ulen - sizeof(struct udphdr);
	__u16 length = ((__u16)cd[2] << 8) | cd[3];
	if ((__u32)length + 4 > plen)
		return drop(DROP_MALFORMED);
	__u16 npad = plen - 4 - length;
	if (npad > 3)
		return pass(PASS_PADDING);
	if (v6 == is_mapped(v->peer_ip) || v6 == is_mapped(v->relay_ip))
		return pass(PASS_FAMILY);
	if (!permitted(v->slot, v->peer_ip))
		return drop(DROP_NO_PERMISSION);
	if (over(v->slot, length))
		return drop(DROP_QUOTA);

	__u16 nulen = length + sizeof(struct udphdr);
	__u32 why = 0;
	__u8 src[16];
	__builtin_memcpy(src, v->relay_ip, 16);
	int ifindex = route(ctx, ctx->ingress_ifindex, v6, src, v->peer_ip, v->relay_port, v->peer_port,
			    nulen + L3(v6), h, &why);
	if (!ifindex)
		return pass(why);

	__s64 dsum = 0;
	if (full_csum) {
		if (length > MAX_DATA)
			return pass(PASS_MTU);
		dsum = data_sum(ctx, 0, HDRS(v6) + 4, length);
		if (dsum < 0)
			return XDP_PASS;
	}
	if (full_csum) {
		struct udphdr u = {.source = v->relay_port, .dest = v->peer_port, .len = bpf_htons(nulen)};
		h->udp.check = full_udp_csum(v6, src, v->peer_ip, &u, NULL, 0, dsum);
	} else if (h->udp.check || v6) {
		__u64 acc = (__u16)~h->udp.check;
		acc = csum_readdr(acc, h, v6, src, v->peer_ip, v->relay_port, v->peer_port,
				  bpf_htons(nulen));
		acc = sub_words(acc, cd, 4);
		// The padding: a byte at an even offset from the data's start is the first of its
		// word, at an odd one the second.
		__u8 pad[3] = {};
		__u32 off = HDRS(v6) + 4 + (__u32)length;
		int err = 0;
		if (npad == 1)
			err = bpf_xdp_load_bytes(ctx, off, pad, 1);
		else if (npad == 2)
			err = bpf_xdp_load_bytes(ctx, off, pad, 2);
		else if (npad == 3)
			err = bpf_xdp_load_bytes(ctx, off, pad, 3);
		if (err)
			return XDP_PASS;
		acc = sub16(acc, pad_word(pad[0], length & 1));
		acc = sub16(acc, pad_word(pad[1], (length + 1) & 1));
		acc = sub16(acc, pad_word(pad[2], length & 1));
		h->udp.check = csum_final(acc);
	}
	set_ip(h, v6, src, v->peer_ip, nulen);
	h->udp.source = v->relay_port;
	h->udp.dest = v->peer_port;
	h->udp.len = bpf_htons(nulen);

	// The headers move 4 bytes up, over the ChannelData header; the tail loses the padding
	// (and anything the link added).
	__u32 frame = bpf_xdp_get_buff_len(ctx);
	__u32 want = HDRS(v6) + length;
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_DROP;
	if (frame - 4 > want && bpf_xdp_adjust_tail(ctx, -(int)(frame - 4 - want)))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) > end)
		return XDP_DROP;
	__builtin_memcpy(data, &h->eth, sizeof(h->eth));
	if (v6)
		__builtin_memcpy(data + sizeof(struct ethhdr), &h->ip6, sizeof(h->ip6));
	else
		__builtin_memcpy(data + sizeof(struct ethhdr), &h->ip4, sizeof(h->ip4));
	__builtin_memcpy(data + sizeof(struct ethhdr) + L3(v6), &h->udp, sizeof(h->udp));
	count(v->slot, 1, length);
	return send(ctx, ifindex);
}

// peer_to_client relays the datagram from peer after headers h (ulen: its UDP length) by entry v: it
// prepends the ChannelData header and readdresses it listen address → client.
//
// RFC 8656 §12.6 (§11.3): the relay checks for a permission for the peer's IP address (none:
// "silently discarded"), then sends the data in a ChannelData message on the channel bound to
// the peer's transport address.
static __always_inline int peer_to_client(struct xdp_md *ctx, int v6, struct hdrs *h,
					  const struct p2c_val *v, const __u8 *peer, __u16 ulen)
{
	void *data, *end;
	if (v6 == is_mapped(v->client_ip) || v6 == is_mapped(v->lis_ip))
		return pass(PASS_FAMILY);
	if (!permitted(v->slot, peer))
		return drop(DROP_NO_PERMISSION);
	if (over(v->slot, ulen - sizeof(struct udphdr)))
		return drop(DROP_QUOTA);

	__u16 plen = ulen - sizeof(struct udphdr);
	if (plen > 0xffff - 4 - sizeof(struct udphdr) - sizeof(struct iphdr))
		return pass(PASS_MTU);
	__u16 nulen = ulen + 4;
	__u32 why = 0;
	__u8 src[16];
	__builtin_memcpy(src, v->lis_ip, 16);
	int ifindex = route(ctx, ctx->ingress_ifindex, v6, src, v->client_ip, v->lis_port, v->client_port,
			    nulen + L3(v6), h, &why);
	if (!ifindex)
		return pass(why);

	__be16 cd[2] = {bpf_htons(v->chan), bpf_htons(plen)};
	if (full_csum) {
		if (plen > MAX_DATA)
			return pass(PASS_MTU);
		__s64 dsum = data_sum(ctx, 0, HDRS(v6), plen);
		if (dsum < 0)
			return XDP_PASS;
		struct udphdr u = {.source = v->lis_port, .dest = v->client_port, .len = bpf_htons(nulen)};
		h->udp.check = full_udp_csum(v6, src, v->client_ip, &u, cd, 4, dsum);
	} else if (h->udp.check || v6) {
		__u64 acc = (__u16)~h->udp.check;
		acc = csum_readdr(acc, h, v6, src, v->client_ip, v->lis_port, v->client_port,
				  bpf_htons(nulen));
		acc = add_words(acc, cd, 4);
		h->udp.check = csum_final(acc);
	}
	set_ip(h, v6, src, v->client_ip, nulen);
	h->udp.source = v->lis_port;
	h->udp.dest = v->client_port;
	h->udp.len = bpf_htons(nulen);

	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) + 4 > end)
		return XDP_DROP;
	__builtin_memcpy(data, &h->eth, sizeof(h->eth));
	if (v6)
		__builtin_memcpy(data + sizeof(struct ethhdr), &h->ip6, sizeof(h->ip6));
	else
		__builtin_memcpy(data + sizeof(struct ethhdr), &h->ip4, sizeof(h->ip4));
	__builtin_memcpy(data + sizeof(struct ethhdr) + L3(v6), &h->udp, sizeof(h->udp));
	__builtin_memcpy(data + HDRS(v6), cd, 4);
	count(v->slot, 0, plen);
	return send(ctx, ifindex);
}

// c2p_lookup finds the channel of ChannelData message cd (its first bytes) from client src to
// listener dst on the ports of u: under the listener's address, else under the wildcard one.
static __always_inline struct c2p_val *c2p_lookup(int v6, const __u8 *src, const __u8 *dst,
						  const struct udphdr *u, const __u8 *cd)
{
	struct c2p_key k = {};
	__builtin_memcpy(k.client_ip, src, 16);
	__builtin_memcpy(k.lis_ip, dst, 16);
	k.client_port = u->source;
	k.lis_port = u->dest;
	k.chan = ((__u16)cd[0] << 8) | cd[1];
	struct c2p_val *v = bpf_map_lookup_elem(&c2p, &k);
	if (!v) { // a listener on the wildcard address
		__builtin_memset(k.lis_ip, 0, 16);
		if (!v6) {
			k.lis_ip[10] = 0xff;
			k.lis_ip[11] = 0xff;
		}
		v = bpf_map_lookup_elem(&c2p, &k);
	}
	return v;
}

// p2c_lookup finds the permission of a datagram from peer src to relay address dst on the
// ports of u.
static __always_inline struct p2c_val *p2c_lookup(const __u8 *src, const __u8 *dst, const struct udphdr *u)
{
	struct p2c_key k = {};
	__builtin_memcpy(k.peer_ip, src, 16);
	__builtin_memcpy(k.relay_ip, dst, 16);
	k.peer_port = u->source;
	k.relay_port = u->dest;
	return bpf_map_lookup_elem(&p2c, &k);
}

static __always_inline int relay(struct xdp_md *ctx, int v6)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	if (data + HDRS(v6) > end)
		return XDP_PASS;
	struct hdrs h;
	__builtin_memcpy(&h.eth, data, sizeof(h.eth));
	__u16 ulen;
	__u8 src[16], dst[16];
	if (v6) {
		__builtin_memcpy(&h.ip6, data + sizeof(struct ethhdr), sizeof(h.ip6));
		if (h.ip6.nexthdr != IPPROTO_UDP)
			return h.ip6.nexthdr == NEXTHDR_FRAGMENT ? pass(PASS_FRAGMENT) : XDP_PASS;
		ulen = bpf_ntohs(h.ip6.payload_len);
		__builtin_memcpy(src, &h.ip6.saddr, 16);
		__builtin_memcpy(dst, &h.ip6.daddr, 16);
	} else {
		__builtin_memcpy(&h.ip4, data + sizeof(struct ethhdr), sizeof(h.ip4));
		if (h.ip4.protocol != IPPROTO_UDP || h.ip4.version != 4)
			return XDP_PASS;
		if (h.ip4.frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return pass(PASS_FRAGMENT);
		if (h.ip4.ihl != 5)
			return pass(PASS_IP_OPTIONS);
		__u16 tot = bpf_ntohs(h.ip4.tot_len);
		if (tot < sizeof(struct iphdr))
			return XDP_PASS;
		ulen = tot - sizeof(struct iphdr);
		map4(src, h.ip4.saddr);
		map4(dst, h.ip4.daddr);
	}
	__builtin_memcpy(&h.udp, data + sizeof(struct ethhdr) + L3(v6), sizeof(h.udp));
	// The stack checks lengths and checksums of what it does not take: leave it anything odd.
	if (ulen < sizeof(struct udphdr) || bpf_ntohs(h.udp.len) != ulen ||
	    sizeof(struct ethhdr) + L3(v6) + (__u32)ulen > bpf_xdp_get_buff_len(ctx))
		return XDP_PASS;

	// RFC 8656 §12: the first two bits of a ChannelData message are 0b01.
	__u8 *cd = data + HDRS(v6);
	if (ulen >= sizeof(struct udphdr) + 4 && (void *)(cd + 4) <= end && (cd[0] & 0xC0) == 0x40) {
		struct c2p_val *v = c2p_lookup(v6, src, dst, &h.udp, cd);
		if (v) {
			if (v6 && h.udp.check == 0)
				return pass(PASS_CSUM);
			return client_to_peer(ctx, v6, &h, v, ulen);
		}
	}
	struct p2c_val *v = p2c_lookup(src, dst, &h.udp);
	if (!v)
		return pass(PASS_NO_ENTRY);
	if (v6 && h.udp.check == 0)
		return pass(PASS_CSUM);
	return peer_to_client(ctx, v6, &h, v, src, ulen);
}

SEC("xdp")
int avedge_relay(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return relay(ctx, 0);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return relay(ctx, 1);
	return XDP_PASS;
}

// The tc variant (avedge_relay_tc), for loopback: the same relay by the same maps, as a tcx
// ingress program on lo, where XDP cannot serve. A datagram on lo arrives with its UDP checksum
// left partial (CHECKSUM_PARTIAL: the field holds the pseudo-header's sum and csum_start points
// at the UDP header), and generic XDP moves the packet's head without moving csum_start, so a
// ChannelData message with its header stripped reached the receiver as a bad checksum. Here
// bpf_skb_adjust_room removes or inserts the 4 bytes behind the IP header (skb offsets kept
// right) and the relayed packet is delivered locally (TCX_PASS: on loopback every address is
// this host's, and the route the sender's packet took is a local one).
//
//   client → peer: the headers move 4 bytes up, over the ChannelData header, which puts the
//     UDP header 4 bytes past csum_start: the receiver then verifies the checksum in full, so
//     it is computed in full here (reading the data; an IPv4 datagram without a checksum keeps
//     none).
//   peer → client: 4 bytes are inserted before the UDP header, which leaves csum_start before
//     it (the receiver trusts a partial checksum); the checksum is updated with
//     bpf_l4_csum_replace, the pseudo-header's part flagged BPF_F_PSEUDO_HDR, which is right
//     both for a partial checksum and a full one.

// A packet the program leaves alone goes on to the next tcx program on lo, if any (another
// relay's), then up the stack: TCX_NEXT. One it relayed ends the chain, delivered (TCX_PASS).
#define TC_NEXT -1 // TCX_NEXT (linux/bpf.h, 6.6+)

static __always_inline int tc_pass(__u32 reason)
{
	bump(&passes, reason);
	return TC_NEXT;
}

static __always_inline int tc_drop(__u32 reason)
{
	bump(&drops, reason);
	return TC_ACT_SHOT;
}

// is_loopback reports whether a is in 127.0.0.0/8 (IPv4-mapped) or is ::1.
static __always_inline int is_loopback(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;
	if (is_mapped(a))
		return a[12] == 127;
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1);
}

// tc_store writes the IP and UDP headers of h at the front of the packet (behind the Ethernet
// header).
static __always_inline int tc_store(struct __sk_buff *skb, int v6, struct hdrs *h)
{
	int err;
	if (v6)
		err = bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &h->ip6, sizeof(h->ip6), 0);
	else
		err = bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &h->ip4, sizeof(h->ip4), 0);
	if (err)
		return err;
	return bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + L3(v6), &h->udp, sizeof(h->udp), 0);
}

// pseudo_diff is the change in the pseudo-header's sum from h's addresses and UDP length to
// src, dst and nlen.
static __always_inline __u64 pseudo_diff(struct hdrs *h, int v6, const __u8 *src, const __u8 *dst, __be16 nlen)
{
	__u8 addrs[32];
	__u64 ph;
	if (v6) {
		__builtin_memcpy(addrs, src, 16);
		__builtin_memcpy(addrs + 16, dst, 16);
		ph = (__u32)bpf_csum_diff((__be32 *)&h->ip6.saddr, 32, (__be32 *)addrs, 32, 0);
	} else {
		__builtin_memcpy(addrs, src + 12, 4);
		__builtin_memcpy(addrs + 4, dst + 12, 4);
		ph = (__u32)bpf_csum_diff((__be32 *)&h->ip4.saddr, 8, (__be32 *)addrs, 8, 0);
	}
	return add16(sub16(ph, h->udp.len), nlen);
}

// ports_diff is the change in the UDP header's ports and length to sport, dport and nlen.
static __always_inline __u64 ports_diff(struct hdrs *h, __be16 sport, __be16 dport, __be16 nlen)
{
	__u64 rest = 0;
	rest = sub16(rest, h->udp.source);
	rest = sub16(rest, h->udp.dest);
	rest = sub16(rest, h->udp.len);
	rest = add16(rest, sport);
	rest = add16(rest, dport);
	return add16(rest, nlen);
}

// csum_apply applies a checksum change to the UDP checksum of an skb whose headers were
// rewritten: ph the pseudo-header's part (which a partial checksum takes too), rest the
// others'. Nothing when csum is 0 (an IPv4 datagram without a checksum).
static __always_inline int csum_apply(struct __sk_buff *skb, int v6, __u64 ph, __u64 rest, int csum)
{
	if (!csum)
		return 0;
	__u32 at = sizeof(struct ethhdr) + L3(v6) + 6;
	if (bpf_l4_csum_replace(skb, at, 0, fold(ph), BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
	    bpf_l4_csum_replace(skb, at, 0, fold(rest), BPF_F_MARK_MANGLED_0))
		return -1;
	return 0;
}

// tc_client_to_peer is client_to_peer on an skb; cd is the ChannelData header.
static __always_inline int tc_client_to_peer(struct __sk_buff *skb, int v6, struct hdrs *h,
					     const struct c2p_val *v, const __u8 *cd, __u16 ulen)
{
	__u16 plen = ulen - sizeof(struct udphdr);
	__u16 length = ((__u16)cd[2] << 8) | cd[3];
	if ((__u32)length + 4 > plen)
		return tc_drop(DROP_MALFORMED);
	__u16 npad = plen - 4 - length;
	if (npad > 3)
		return tc_pass(PASS_PADDING);
	if (v6 == is_mapped(v->peer_ip) || v6 == is_mapped(v->relay_ip))
		return tc_pass(PASS_FAMILY);
	if (!is_loopback(v->peer_ip) || !is_loopback(v->relay_ip))
		return tc_pass(PASS_NO_ROUTE); // not delivered on this host's loopback
	if (!permitted(v->slot, v->peer_ip))
		return tc_drop(DROP_NO_PERMISSION);
	if (length > MAX_DATA && (v6 || h->udp.check))
		return tc_pass(PASS_MTU);
	if (over(v->slot, length))
		return tc_drop(DROP_QUOTA);

	__u16 nulen = length + sizeof(struct udphdr);
	struct udphdr u = {.source = v->relay_port, .dest = v->peer_port, .len = bpf_htons(nulen)};
	if (v6 || h->udp.check) {
		__s64 dsum = data_sum(skb, 1, HDRS(v6) + 4, length);
		if (dsum < 0)
			return TC_NEXT;
		u.check = full_udp_csum(v6, v->relay_ip, v->peer_ip, &u, NULL, 0, dsum);
	}
	h->udp = u;
	set_ip(h, v6, v->relay_ip, v->peer_ip, nulen);

	// Nothing is written before the packet has its new shape, so that a failure leaves it as
	// it came: first the padding goes, then the 4 bytes behind the IP header (the old ports;
	// the new UDP header then lies over the old length, checksum and ChannelData header).
	__u32 want = HDRS(v6) + 4 + (__u32)length;
	if (skb->len > want && bpf_skb_change_tail(skb, want, 0))
		return TC_NEXT;
	if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0))
		return TC_NEXT;
	if (tc_store(skb, v6, h))
		return TC_ACT_SHOT;
	count(v->slot, 1, length);
	return TC_ACT_OK;
}

// tc_peer_to_client is peer_to_client on an skb.
static __always_inline int tc_peer_to_client(struct __sk_buff *skb, int v6, struct hdrs *h,
					     const struct p2c_val *v, const __u8 *peer, __u16 ulen)
{
	if (v6 == is_mapped(v->client_ip) || v6 == is_mapped(v->lis_ip))
		return tc_pass(PASS_FAMILY);
	if (is_wildcard(v->lis_ip) || !is_loopback(v->client_ip) || !is_loopback(v->lis_ip))
		return tc_pass(PASS_NO_ROUTE); // no source to answer from, or not on loopback
	if (!permitted(v->slot, peer))
		return tc_drop(DROP_NO_PERMISSION);
	__u16 plen = ulen - sizeof(struct udphdr);
	if (plen > 0xffff - 4 - sizeof(struct udphdr) - sizeof(struct ipv6hdr))
		return tc_pass(PASS_MTU);
	if (over(v->slot, plen))
		return tc_drop(DROP_QUOTA);

	__u16 nulen = ulen + 4;
	__be16 cd[2] = {bpf_htons(v->chan), bpf_htons(plen)};
	__be16 nlen = bpf_htons(nulen);
	// The checksum's change in two parts: the pseudo-header's (addresses and length), which a
	// partial checksum takes too, and the rest (ports, length, the ChannelData header).
	__u64 ph = pseudo_diff(h, v6, v->lis_ip, v->client_ip, nlen);
	__u64 rest = add_words(ports_diff(h, v->lis_port, v->client_port, nlen), cd, 4);
	int csum = v6 || h->udp.check;

	set_ip(h, v6, v->lis_ip, v->client_ip, nulen);
	h->udp.source = v->lis_port;
	h->udp.dest = v->client_port;
	h->udp.len = nlen;

	if (bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, 0))
		return TC_NEXT;
	if (tc_store(skb, v6, h) || bpf_skb_store_bytes(skb, HDRS(v6), cd, 4, 0) ||
	    csum_apply(skb, v6, ph, rest, csum))
		return TC_ACT_SHOT;
	count(v->slot, 0, plen);
	return TC_ACT_OK;
}

// The tc variant on any other interface (avedge_fwd_tc): the same relay, sent on by the routing
// table's next hop (route, as the XDP program does) and bpf_redirect to the out interface's
// egress. Unlike XDP_TX into a veth, that needs no program on the veth's far end: the frame
// leaves through the device's own transmit path. bpf_redirect rather than bpf_redirect_neigh:
// the route lookup is needed anyway (the out interface, the MTU, a wildcard listener's source),
// and it gives the MAC addresses too; a missing neighbour entry leaves the packet to user space,
// whose send resolves it, as on the XDP path.
//
// The UDP header stays where it is and the data moves 4 bytes (down over the ChannelData header,
// or up to make room for one). A datagram a local sender left to checksum offload
// (CHECKSUM_PARTIAL: from another namespace over a veth) has csum_start at its UDP header, and
// the device that sends the relayed one (or the stack, for a device without the offload)
// completes the checksum from there: moving the headers instead (bpf_skb_adjust_room) would leave
// csum_start 4 bytes off and the checksum written over a port or the ChannelData length. The
// checksum is updated by bpf_l4_csum_replace, which knows which kind the skb carries: a full one
// takes every change, a partial one (the pseudo-header's sum) only the addresses and length.

// The data a move copies, per CPU (the program's stack holds 512 bytes).
struct scratch {
	__u8 b[MAX_DATA];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// move_data copies the n bytes at packet offset from (n <= MAX_DATA) to offset to, which may
// overlap them: read whole, then written, two helper calls whatever n.
static __always_inline int move_data(struct __sk_buff *skb, __u32 from, __u32 to, __u32 n)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return -1;
	if (n == 0)
		return 0;
	if (n > MAX_DATA)
		return -1;
	if (bpf_skb_load_bytes(skb, from, s->b, n))
		return -1;
	return bpf_skb_store_bytes(skb, to, s->b, n, 0);
}

// fwd_store writes h (Ethernet, IP and UDP headers, the UDP checksum as it came) at the front
// of the packet, then applies the checksum's change: ph the pseudo-header's part, rest the
// others'.
static __always_inline int fwd_store(struct __sk_buff *skb, int v6, struct hdrs *h, __u64 ph, __u64 rest, int csum)
{
	if (bpf_skb_store_bytes(skb, 0, &h->eth, sizeof(h->eth), 0) || tc_store(skb, v6, h))
		return -1;
	return csum_apply(skb, v6, ph, rest, csum);
}

// fwd_client_to_peer is client_to_peer on an skb, sent on by redirect; cd is the ChannelData
// header.
static __always_inline int fwd_client_to_peer(struct __sk_buff *skb, int v6, struct hdrs *h,
					      const struct c2p_val *v, const __u8 *cd, __u16 ulen)
{
	__u16 plen = ulen - sizeof(struct udphdr);
	__u16 length = ((__u16)cd[2] << 8) | cd[3];
	if ((__u32)length + 4 > plen)
		return tc_drop(DROP_MALFORMED);
	__u16 npad = plen - 4 - length;
	if (npad > 3)
		return tc_pass(PASS_PADDING);
	if (v6 == is_mapped(v->peer_ip) || v6 == is_mapped(v->relay_ip))
		return tc_pass(PASS_FAMILY);
	if (!permitted(v->slot, v->peer_ip))
		return tc_drop(DROP_NO_PERMISSION);
	if (length > MAX_DATA)
		return tc_pass(PASS_MTU);
	if (over(v->slot, length))
		return tc_drop(DROP_QUOTA);

	__u16 nulen = length + sizeof(struct udphdr);
	__u32 why = 0;
	__u8 src[16];
	__builtin_memcpy(src, v->relay_ip, 16);
	int ifindex = route(skb, skb->ifindex, v6, src, v->peer_ip, v->relay_port, v->peer_port,
			    nulen + L3(v6), h, &why);
	if (!ifindex)
		return tc_pass(why);

	// The padding leaves the sum: a byte at an even offset from the data's start is the
	// first of its word, at an odd one the second.
	__u8 pad[3] = {};
	__u32 off = HDRS(v6) + 4 + (__u32)length;
	int err = 0;
	if (npad == 1)
		err = bpf_skb_load_bytes(skb, off, pad, 1);
	else if (npad == 2)
		err = bpf_skb_load_bytes(skb, off, pad, 2);
	else if (npad == 3)
		err = bpf_skb_load_bytes(skb, off, pad, 3);
	if (err)
		return TC_NEXT;
	__be16 nlen = bpf_htons(nulen);
	__u64 ph = pseudo_diff(h, v6, src, v->peer_ip, nlen);
	__u64 rest = ports_diff(h, v->relay_port, v->peer_port, nlen);
	rest = sub_words(rest, cd, 4);
	rest = sub16(rest, pad_word(pad[0], length & 1));
	rest = sub16(rest, pad_word(pad[1], (length + 1) & 1));
	rest = sub16(rest, pad_word(pad[2], length & 1));
	int csum = v6 || h->udp.check;

	set_ip(h, v6, src, v->peer_ip, nulen);
	h->udp.source = v->relay_port;
	h->udp.dest = v->peer_port;
	h->udp.len = nlen;

	// Nothing is written before the data has moved, so that a failure there leaves the
	// packet as it came (a failed store, after, drops it).
	if (move_data(skb, HDRS(v6) + 4, HDRS(v6), length))
		return TC_NEXT;
	if (bpf_skb_change_tail(skb, HDRS(v6) + length, 0))
		return TC_ACT_SHOT;
	if (fwd_store(skb, v6, h, ph, rest, csum))
		return TC_ACT_SHOT;
	count(v->slot, 1, length);
	return bpf_redirect(ifindex, 0);
}

// fwd_peer_to_client is peer_to_client on an skb, sent on by redirect.
static __always_inline int fwd_peer_to_client(struct __sk_buff *skb, int v6, struct hdrs *h,
					      const struct p2c_val *v, const __u8 *peer, __u16 ulen)
{
	if (v6 == is_mapped(v->client_ip) || v6 == is_mapped(v->lis_ip))
		return tc_pass(PASS_FAMILY);
	if (!permitted(v->slot, peer))
		return tc_drop(DROP_NO_PERMISSION);
	__u16 plen = ulen - sizeof(struct udphdr);
	if (plen > MAX_DATA)
		return tc_pass(PASS_MTU);
	if (over(v->slot, plen))
		return tc_drop(DROP_QUOTA);

	__u16 nulen = ulen + 4;
	__u32 why = 0;
	__u8 src[16];
	__builtin_memcpy(src, v->lis_ip, 16);
	int ifindex = route(skb, skb->ifindex, v6, src, v->client_ip, v->lis_port, v->client_port,
			    nulen + L3(v6), h, &why);
	if (!ifindex)
		return tc_pass(why);

	__be16 cd[2] = {bpf_htons(v->chan), bpf_htons(plen)};
	__be16 nlen = bpf_htons(nulen);
	__u64 ph = pseudo_diff(h, v6, src, v->client_ip, nlen);
	__u64 rest = add_words(ports_diff(h, v->lis_port, v->client_port, nlen), cd, 4);
	int csum = v6 || h->udp.check;

	set_ip(h, v6, src, v->client_ip, nulen);
	h->udp.source = v->lis_port;
	h->udp.dest = v->client_port;
	h->udp.len = nlen;

	// The tail grows by 4 (and loses anything the link added), the data moves up into it.
	if (bpf_skb_change_tail(skb, HDRS(v6) + 4 + (__u32)plen, 0))
		return TC_NEXT;
	if (move_data(skb, HDRS(v6), HDRS(v6) + 4, plen) || bpf_skb_store_bytes(skb, HDRS(v6), cd, 4, 0))
		return TC_ACT_SHOT;
	if (fwd_store(skb, v6, h, ph, rest, csum))
		return TC_ACT_SHOT;
	count(v->slot, 0, plen);
	return bpf_redirect(ifindex, 0);
}

static __always_inline int tc_relay(struct __sk_buff *skb, int v6, int fwd)
{
	struct hdrs h;
	__u16 ulen;
	__u8 src[16], dst[16];
	// The forwarding variant sends the frame on: its Ethernet header is rewritten. A GSO skb
	// (several datagrams) is left to the stack.
	if (fwd && (skb->gso_size || bpf_skb_load_bytes(skb, 0, &h.eth, sizeof(h.eth))))
		return TC_NEXT;
	if (v6) {
		if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &h.ip6, sizeof(h.ip6)))
			return TC_NEXT;
		if (h.ip6.nexthdr != IPPROTO_UDP)
			return h.ip6.nexthdr == NEXTHDR_FRAGMENT ? tc_pass(PASS_FRAGMENT) : TC_NEXT;
		ulen = bpf_ntohs(h.ip6.payload_len);
		__builtin_memcpy(src, &h.ip6.saddr, 16);
		__builtin_memcpy(dst, &h.ip6.daddr, 16);
	} else {
		if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &h.ip4, sizeof(h.ip4)))
			return TC_NEXT;
		if (h.ip4.protocol != IPPROTO_UDP || h.ip4.version != 4)
			return TC_NEXT;
		if (h.ip4.frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return tc_pass(PASS_FRAGMENT);
		if (h.ip4.ihl != 5)
			return tc_pass(PASS_IP_OPTIONS);
		__u16 tot = bpf_ntohs(h.ip4.tot_len);
		if (tot < sizeof(struct iphdr))
			return TC_NEXT;
		ulen = tot - sizeof(struct iphdr);
		map4(src, h.ip4.saddr);
		map4(dst, h.ip4.daddr);
	}
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr) + L3(v6), &h.udp, sizeof(h.udp)))
		return TC_NEXT;
	if (ulen < sizeof(struct udphdr) || bpf_ntohs(h.udp.len) != ulen ||
	    sizeof(struct ethhdr) + L3(v6) + (__u32)ulen > skb->len)
		return TC_NEXT;

	__u8 cd[4] = {};
	if (ulen >= sizeof(struct udphdr) + 4 && !bpf_skb_load_bytes(skb, HDRS(v6), cd, 4) &&
	    (cd[0] & 0xC0) == 0x40) {
		struct c2p_val *v = c2p_lookup(v6, src, dst, &h.udp, cd);
		if (v) {
			if (v6 && h.udp.check == 0)
				return tc_pass(PASS_CSUM);
			if (fwd)
				return fwd_client_to_peer(skb, v6, &h, v, cd, ulen);
			return tc_client_to_peer(skb, v6, &h, v, cd, ulen);
		}
	}
	struct p2c_val *v = p2c_lookup(src, dst, &h.udp);
	if (!v)
		return tc_pass(PASS_NO_ENTRY);
	if (v6 && h.udp.check == 0)
		return tc_pass(PASS_CSUM);
	if (fwd)
		return fwd_peer_to_client(skb, v6, &h, v, src, ulen);
	return tc_peer_to_client(skb, v6, &h, v, src, ulen);
}

// tc_entry is tc_relay by the skb's family.
static __always_inline int tc_entry(struct __sk_buff *skb, int fwd)
{
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return tc_relay(skb, 0, fwd);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return tc_relay(skb, 1, fwd);
	return TC_NEXT;
}

// avedge_relay_tc is the relay for loopback, attached with tcx on lo's ingress.
SEC("tc")
int avedge_relay_tc(struct __sk_buff *skb) { return tc_entry(skb, 0); }

// avedge_fwd_tc is the relay for any other interface, attached with tcx on its ingress: what it
// relays leaves by redirect to the out interface's egress.
SEC("tc")
int avedge_fwd_tc(struct __sk_buff *skb) { return tc_entry(skb, 1); }

// avedge_pass lets everything through. Attached to the far end of a veth pair, it gives that
// end the NAPI context that XDP_TX and redirects into it need.
SEC("xdp")
int avedge_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
