package policy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Config refines the built-in peer policy. The zero value is the safe
// default: every special-purpose range refused, no overrides.
type Config struct {
	// AllowLoopback lets peers on 127.0.0.0/8 and ::1 (and their embedded
	// IPv6 forms such as ::ffff:127.0.0.1) through, for an all-loopback
	// development setup. Default false: loopback peers are refused.
	AllowLoopback bool

	// Allow lifts the built-in deny ranges for the addresses it contains;
	// it never lifts Deny. An entry is matched against the peer address as
	// given and against each IPv4 address it embeds. Only a single-address
	// entry (a /32 or /128) lifts the refusal of a Local address. Default
	// empty.
	Allow []netip.Prefix

	// Deny is always refused ([ReasonDenyList]), whatever Allow says. An
	// entry is matched against the address as given and against each IPv4
	// address it embeds, so denying 198.51.100.7/32 also denies
	// ::ffff:198.51.100.7 and 2002:c633:6407::1. Default empty.
	Deny []netip.Prefix

	// Local are the host's own addresses (the kernel's routes of type
	// local: every interface address, secondary addresses, VIPs, AnyIP
	// ranges and 127.0.0.0/8), refused ([ReasonLocal]) so that a client
	// cannot reach a service on the relay's host, its listeners on another
	// address included. Three exceptions: an address in Own; a loopback
	// address when AllowLoopback is set; an address that Allow names as a
	// single address. An entry is matched against the address as given and
	// against each IPv4 address it embeds. Default empty.
	Local []netip.Prefix

	// Own are the relay's own relayed addresses (relay and external IPs),
	// exempt from Local: a peer there is another allocation's relayed
	// address (both ends of a call on relay candidates of one relay), and
	// the relay checks its port per packet instead. Default empty.
	Own []netip.Addr
}

// Policy decides whether a peer address may be reached through the relay.
// It is immutable after [New] and safe for concurrent use; the zero Policy
// is the default policy (New(Config{})).
type Policy struct {
	// Static after construction.
	allowLoopback bool
	allow4        []range4 // reason unused
	allow6        []range6 // reason unused
	deny4         []range4
	deny6         []range6
	local4        []range4
	local6        []range6
	lift4         []uint32     // Own, and single-address Allow entries: exempt from Local
	lift6         []netip.Addr // the same, IPv6
}

// New builds a Policy from cfg. The slices are copied; invalid prefixes and
// addresses are skipped, IPv4-mapped entries (::ffff:10.0.0.0/104,
// ::ffff:10.0.0.1) are stored as their IPv4 form, and zones are dropped.
func New(cfg Config) *Policy {
	p := &Policy{allowLoopback: cfg.AllowLoopback}
	p.allow4, p.allow6 = splitPrefixes(cfg.Allow)
	p.deny4, p.deny6 = splitPrefixes(cfg.Deny)
	p.local4, p.local6 = splitPrefixes(cfg.Local)
	lifted := append([]netip.Addr(nil), cfg.Own...)
	for _, pfx := range cfg.Allow {
		if pfx.IsValid() && pfx.IsSingleIP() {
			lifted = append(lifted, pfx.Addr())
		}
	}
	for _, a := range lifted {
		if !a.IsValid() {
			continue
		}
		a = a.WithZone("").Unmap()
		if a.Is4() {
			p.lift4 = append(p.lift4, v4value(a))
		} else {
			p.lift6 = append(p.lift6, a)
		}
	}
	return p
}

func splitPrefixes(in []netip.Prefix) (v4 []range4, v6 []range6) {
	for _, pfx := range in {
		if !pfx.IsValid() {
			continue
		}
		pfx = unmapPrefix(pfx.Masked())
		if pfx.Addr().Is4() {
			v4 = append(v4, block4FromPrefix(pfx))
		} else {
			v6 = append(v6, block6FromPrefix(pfx))
		}
	}
	return v4, v6
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

func block4FromPrefix(p netip.Prefix) range4 {
	var mask uint32
	if p.Bits() > 0 {
		mask = ^uint32(0) << (32 - p.Bits())
	}
	return range4{base: v4value(p.Addr()) & mask, mask: mask}
}

func v4value(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func in4(list []range4, v uint32) bool {
	for i := range list {
		if v&list[i].mask == list[i].base {
			return true
		}
	}
	return false
}

func in6(list []range6, hi, lo uint64) bool {
	for i := range list {
		if list[i].contains(hi, lo) {
			return true
		}
	}
	return false
}

// Check returns [Allowed] or the reason ip may not be used as a peer (see
// the package documentation for the order of the rules). It does not
// allocate and is safe for concurrent use.
func (p *Policy) Check(ip netip.Addr) Reason {
	if !ip.IsValid() || ip.Zone() != "" {
		return ReasonInvalid
	}

	// The IPv4 components: the address itself, or the IPv4 addresses an
	// IPv6 address embeds.
	var emb [2]uint32
	var n int
	var hi, lo uint64
	class6 := Allowed
	is4 := ip.Is4()
	if is4 {
		emb[0], n = v4value(ip), 1
	} else {
		b := ip.As16()
		hi, lo = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
		class6, n = classify6(hi, lo, p.allowLoopback, &emb)
	}
	comps := emb[:n]

	if !is4 && in6(p.deny6, hi, lo) {
		return ReasonDenyList
	}
	for _, v := range comps {
		if in4(p.deny4, v) {
			return ReasonDenyList
		}
	}

	// Allow lifts the built-in classification of the address as given. For
	// an IPv6 address that is its IPv6 class only: every IPv4 address it
	// embeds is still classified on its own and lifted only by an IPv4
	// entry, so allowing a NAT64 prefix (64:ff9b::/96) reaches public IPv4
	// peers through it but not 64:ff9b::a9fe:a9fe (169.254.169.254).
	for _, v := range comps {
		if r := builtin4(v, p.allowLoopback); r != Allowed && !in4(p.allow4, v) {
			return r
		}
	}
	if class6 != Allowed && (is4 || !in6(p.allow6, hi, lo)) {
		return class6
	}

	// The host's own addresses, after the built-in ranges so that a
	// loopback or private address keeps its more telling reason.
	if !is4 && in6(p.local6, hi, lo) && !p.lifted6(ip) {
		return ReasonLocal
	}
	for _, v := range comps {
		if in4(p.local4, v) && !p.lifted4(v) {
			return ReasonLocal
		}
	}
	return Allowed
}

// lifted4 reports whether the IPv4 address v is exempt from Local.
func (p *Policy) lifted4(v uint32) bool {
	if p.allowLoopback && v>>24 == 127 {
		return true
	}
	for _, l := range p.lift4 {
		if l == v {
			return true
		}
	}
	return false
}

// lifted6 reports whether the IPv6 address ip is exempt from Local.
func (p *Policy) lifted6(ip netip.Addr) bool {
	if p.allowLoopback && ip.IsLoopback() {
		return true
	}
	for _, l := range p.lift6 {
		if l == ip {
			return true
		}
	}
	return false
}

// ParsePrefixes parses allow/deny list entries: a CIDR prefix ("10.0.0.0/8",
// "2001:db8::/32") or a bare address (as /32 or /128). Surrounding spaces are
// trimmed; host bits are cleared ("10.1.2.3/8" is 10.0.0.0/8); IPv4-mapped
// entries become their IPv4 form. An error names the first bad entry and its
// index and wraps [ErrInvalidPrefix].
func ParsePrefixes(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for i, raw := range entries {
		s := strings.TrimSpace(raw)
		var pfx netip.Prefix
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("policy: entry %d %q: %w: %w", i, raw, ErrInvalidPrefix, err)
			}
			pfx = p
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("policy: entry %d %q: %w: %w", i, raw, ErrInvalidPrefix, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("policy: entry %d %q: %w: zone not allowed", i, raw, ErrInvalidPrefix)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, unmapPrefix(pfx.Masked()))
	}
	return out, nil
}
