package policy

import (
	"encoding/binary"
	"net/netip"
)

// The built-in tables below are read-only after package initialisation.

// RFC 8656, Section 10.2 (Receiving a CreatePermission Request):
//
//	The server MAY impose restrictions on the IP address allowed in the
//	XOR-PEER-ADDRESS attribute; if a value is not allowed, the server
//	rejects the request with a 403 (Forbidden) error.
//
// Sections 11.2 (Send indication: "silently discards") and 12.2 (ChannelBind:
// 403) say the same for the other paths that name a peer, and Section 21
// (Security Considerations) warns that a relay lets a client reach hosts
// behind the relay's own firewall. avedge therefore refuses by default every
// block that RFC 6890's special-purpose registries do not mark as global:
//
// RFC 6890, Section 2.1:
//
//	Global - A boolean value indicating whether an IP datagram whose
//	destination address is drawn from the allocated special-purpose
//	address block is forwardable beyond a specified administrative
//	domain.

// range4 is one IPv4 block as a value/mask pair, so the scan is a few integer
// compares with no allocation.
type range4 struct {
	base, mask uint32
	reason     Reason
}

func block4(a, b, c, d byte, bits int, reason Reason) range4 {
	mask := ^uint32(0) << (32 - bits)
	return range4{base: uint32(a)<<24 | uint32(b)<<16 | uint32(c)<<8 | uint32(d), mask: mask, reason: reason}
}

// special4 is the IPv4 Special-Purpose Address Registry (RFC 6890 Section
// 2.2.2 and its updates) restricted to the entries whose "Global" is False,
// plus 224/4 (RFC 5771) which the registry leaves to the multicast registry.
// First match wins, so 255.255.255.255 reports broadcast before 240/4.
//
//	Address Block       Name                               RFC        Global
//	0.0.0.0/8           "This host on this network"        RFC 1122   False
//	10.0.0.0/8          Private-Use                        RFC 1918   False
//	100.64.0.0/10       Shared Address Space               RFC 6598   False
//	127.0.0.0/8         Loopback                           RFC 1122   False
//	169.254.0.0/16      Link Local                         RFC 3927   False
//	172.16.0.0/12       Private-Use                        RFC 1918   False
//	192.0.0.0/24        IETF Protocol Assignments          RFC 6890   False
//	192.0.2.0/24        Documentation (TEST-NET-1)         RFC 5737   False
//	192.88.99.0/24      6to4 Relay Anycast (deprecated)    RFC 7526   -
//	192.168.0.0/16      Private-Use                        RFC 1918   False
//	198.18.0.0/15       Benchmarking                       RFC 2544   False
//	198.51.100.0/24     Documentation (TEST-NET-2)         RFC 5737   False
//	203.0.113.0/24      Documentation (TEST-NET-3)         RFC 5737   False
//	240.0.0.0/4         Reserved                           RFC 1112   False
//	255.255.255.255/32  Limited Broadcast                  RFC 919    False
//
// plus one public address that is a cloud host service, not a peer:
//
//	168.63.129.16/32    Azure WireServer / host DNS        (Azure)    -
var special4 = [...]range4{
	block4(0, 0, 0, 0, 8, ReasonUnspecified),
	block4(10, 0, 0, 0, 8, ReasonPrivate),
	block4(100, 64, 0, 0, 10, ReasonCGNAT),
	block4(127, 0, 0, 0, 8, ReasonLoopback),
	block4(169, 254, 0, 0, 16, ReasonLinkLocal),
	block4(172, 16, 0, 0, 12, ReasonPrivate),
	block4(192, 0, 0, 0, 24, ReasonReserved),
	block4(192, 0, 2, 0, 24, ReasonDocumentation),
	block4(192, 88, 99, 0, 24, ReasonReserved),
	block4(192, 168, 0, 0, 16, ReasonPrivate),
	block4(198, 18, 0, 0, 15, ReasonReserved),
	block4(198, 51, 100, 0, 24, ReasonDocumentation),
	block4(203, 0, 113, 0, 24, ReasonDocumentation),
	block4(224, 0, 0, 0, 4, ReasonMulticast),
	block4(255, 255, 255, 255, 32, ReasonBroadcast),
	block4(240, 0, 0, 0, 4, ReasonReserved),
	block4(168, 63, 129, 16, 32, ReasonMetadata),
}

// builtin4 classifies an IPv4 address (as its 32-bit value) by special4.
func builtin4(v uint32, allowLoopback bool) Reason {
	for i := range special4 {
		r := &special4[i]
		if v&r.mask == r.base {
			if r.reason == ReasonLoopback && allowLoopback {
				return Allowed
			}
			return r.reason
		}
	}
	return Allowed
}

// range6 is one IPv6 block as value/mask halves, compared as two uint64s.
type range6 struct {
	hi, lo, mhi, mlo uint64
	reason           Reason
}

func block6(s string, reason Reason) range6 {
	p := netip.MustParsePrefix(s)
	r := block6FromPrefix(p)
	r.reason = reason
	return r
}

func block6FromPrefix(p netip.Prefix) range6 {
	b := p.Masked().Addr().As16()
	var mhi, mlo uint64
	switch bitsN := p.Bits(); {
	case bitsN == 0:
	case bitsN <= 64:
		mhi = ^uint64(0) << (64 - bitsN)
	default:
		mhi = ^uint64(0)
		mlo = ^uint64(0) << (128 - bitsN)
	}
	return range6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), mhi: mhi, mlo: mlo}
}

func (r *range6) contains(hi, lo uint64) bool {
	return hi&r.mhi == r.hi && lo&r.mlo == r.lo
}

// special6 is the IPv6 Special-Purpose Address Registry (RFC 6890 Section
// 2.2.3 and its updates) restricted to the non-global entries that lie inside
// 2000::/3 or that need a reason more precise than "reserved"; everything
// outside 2000::/3 that is not a translation prefix handled by classify6 is
// refused as reserved (IANA IPv6 Address Space: only 2000::/3 is allocated
// global unicast). ::, ::1 and the prefixes embedding IPv4 are decoded in
// classify6 before this table is consulted.
//
//	Address Block       Name                               RFC        Global
//	100::/64            Discard-Only Address Block         RFC 6666   False
//	2001:2::/48         Benchmarking                       RFC 5180   False
//	2001:10::/28        ORCHID (deprecated)                RFC 4843   False
//	2001:20::/28        ORCHIDv2                           RFC 7343   False
//	2001:db8::/32       Documentation                      RFC 3849   False
//	3fff::/20           Documentation                      RFC 9637   False
//	fc00::/7            Unique-Local                       RFC 4193   False
//	fe80::/10           Link-Local Unicast                 RFC 4291   False
//	fec0::/10           Site-Local (deprecated)            RFC 3879   -
//	ff00::/8            Multicast                          RFC 4291   -
var special6 = [...]range6{
	block6("100::/64", ReasonReserved),
	block6("2001:2::/48", ReasonReserved),
	block6("2001:10::/28", ReasonReserved),
	block6("2001:20::/28", ReasonReserved),
	block6("2001:db8::/32", ReasonDocumentation),
	block6("3fff::/20", ReasonDocumentation),
	block6("fc00::/7", ReasonUniqueLocal),
	block6("fe80::/10", ReasonLinkLocal),
	block6("fec0::/10", ReasonReserved),
	block6("ff00::/8", ReasonMulticast),
}

const (
	nat64WellKnownHi = 0x0064_ff9b_0000_0000 // 64:ff9b::/96, bits 0-63
	nat64LocalHi48   = 0x0064_ff9b_0001      // 64:ff9b:1::/48, bits 0-47
	sixToFourHi16    = 0x2002                // 2002::/16
	teredoHi32       = 0x2001_0000           // 2001::/32
)

// classify6 decodes the IPv4 addresses embedded in the IPv6 address hi:lo
// (its two big-endian halves) into emb as 32-bit values, returns how many,
// and classifies the IPv6 address itself (own). The embedded addresses are
// judged by the caller.
func classify6(hi, lo uint64, allowLoopback bool, emb *[2]uint32) (own Reason, n int) {
	low32 := uint32(lo)

	switch {
	case hi == 0 && lo == 0:
		// RFC 4291, Section 2.5.2: "The address 0:0:0:0:0:0:0:0 is called
		// the unspecified address. It must never be assigned to any node."
		return ReasonUnspecified, 0

	case hi == 0 && lo == 1:
		// RFC 4291, Section 2.5.3: "The unicast address 0:0:0:0:0:0:0:1 is
		// called the loopback address."
		if allowLoopback {
			return Allowed, 0
		}
		return ReasonLoopback, 0

	case hi == 0 && lo>>32 == 0xffff:
		// RFC 4291, Section 2.5.5.2 (IPv4-Mapped IPv6 Address):
		//
		//	|                80 bits               | 16 |      32 bits        |
		//	+--------------------------------------+--------------------------+
		//	|0000..............................0000|FFFF|    IPv4 address     |
		//
		// A dual-stack socket sends to the IPv4 address itself, so the
		// mapped form is exactly as good as its IPv4 address.
		emb[0] = low32
		return Allowed, 1

	case hi == 0 && lo>>32 == 0:
		// RFC 4291, Section 2.5.5.1 (IPv4-Compatible IPv6 Address):
		//
		//	The "IPv4-Compatible IPv6 address" is now deprecated because the
		//	current IPv6 transition mechanisms no longer use these addresses.
		//
		// The embedded address is judged (so ::127.0.0.1 reports loopback)
		// and the deprecated form is refused anyway.
		emb[0] = low32
		return ReasonReserved, 1

	case hi == nat64WellKnownHi && lo>>32 == 0:
		// RFC 6052, Section 2.1: "This document reserves a "Well-Known
		// Prefix" for use in an algorithmic mapping. The value of this IPv6
		// prefix is: 64:ff9b::/96". Section 2.2, for a /96 prefix:
		//
		//	|PL| 0-------------32--40--48--56--64--72--80--88--96--104---------|
		//	|96|                      prefix                   |    v4(32)     |
		emb[0] = low32
		return Allowed, 1

	case hi>>16 == nat64LocalHi48:
		// RFC 8215 reserves 64:ff9b:1::/48 for local-use IPv4/IPv6
		// translation; the registry marks it not globally reachable, and the
		// local translator's prefix length (and so where the IPv4 address
		// sits) cannot be known from the address. The /96 layout, the common
		// deployment, is decoded for a precise reason; the block is refused
		// either way.
		emb[0] = low32
		return ReasonReserved, 1

	case hi>>48 == sixToFourHi16:
		// RFC 3056, Section 2 (the 6to4 prefix 2002:V4ADDR::/48):
		//
		//	| 3 |  13  |    32     |    16  |          64 bits               |
		//	+---+------+-----------+--------+--------------------------------+
		//	|FP | TLA  | V4ADDR    | SLA ID |         Interface ID           |
		//	|001|0x0002|           |        |                                |
		emb[0] = uint32(hi >> 16)
		return Allowed, 1

	case hi>>32 == teredoHi32:
		// RFC 4380, Section 4 (the Teredo IPv6 address format):
		//
		//	+-------------+-------------+-------+------+-------------+
		//	| Prefix      | Server IPv4 | Flags | Port | Client IPv4 |
		//	+-------------+-------------+-------+------+-------------+
		//
		// The client's mapped address and port are "obfuscated": every bit
		// is inverted. Both the server and the client address are judged:
		// packets to the Teredo address travel through both.
		emb[0] = uint32(hi)
		emb[1] = ^low32
		return Allowed, 2
	}

	for i := range special6 {
		if special6[i].contains(hi, lo) {
			return special6[i].reason, 0
		}
	}
	// IANA IPv6 Address Space: 2000::/3 is the Global Unicast block; the
	// rest is reserved by the IETF, unique-local, link-local or multicast.
	if hi>>61 != 0b001 {
		return ReasonReserved, 0
	}
	return Allowed, 0
}
