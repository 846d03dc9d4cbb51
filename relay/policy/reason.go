package policy

// Reason says why [Policy.Check] refused a peer. Each constant doubles as the
// value of a metric label, so the set is fixed and small; [Allowed] is the
// empty string.
type Reason string

// Reasons returned by [Policy.Check].
const (
	// Allowed: the peer may be reached.
	Allowed Reason = ""
	// ReasonLoopback: 127.0.0.0/8 or ::1 (lifted by Config.AllowLoopback).
	ReasonLoopback Reason = "loopback"
	// ReasonUnspecified: 0.0.0.0/8 ("this network") or ::. On most stacks
	// a datagram to 0.0.0.0 or :: reaches the local host (CVE-2020-26262).
	ReasonUnspecified Reason = "unspecified"
	// ReasonPrivate: RFC 1918 10/8, 172.16/12, 192.168/16.
	ReasonPrivate Reason = "private"
	// ReasonCGNAT: RFC 6598 shared address space 100.64/10.
	ReasonCGNAT Reason = "cgnat"
	// ReasonLinkLocal: 169.254/16 (cloud metadata 169.254.169.254) or fe80::/10.
	ReasonLinkLocal Reason = "link_local"
	// ReasonMetadata: a cloud provider's host service on a public address
	// that answers only from inside the provider's network and hands out
	// instance secrets: Azure's WireServer 168.63.129.16 (169.254.169.254,
	// link-local, is refused as [ReasonLinkLocal]).
	ReasonMetadata Reason = "metadata"
	// ReasonMulticast: 224/4 or ff00::/8.
	ReasonMulticast Reason = "multicast"
	// ReasonBroadcast: the limited broadcast address 255.255.255.255.
	ReasonBroadcast Reason = "broadcast"
	// ReasonUniqueLocal: RFC 4193 unique local addresses fc00::/7.
	ReasonUniqueLocal Reason = "unique_local"
	// ReasonDocumentation: TEST-NET-1/2/3, 2001:db8::/32 and 3fff::/20.
	ReasonDocumentation Reason = "documentation"
	// ReasonReserved: every other special-purpose or unallocated block:
	// 240/4, 192.0.0/24, benchmarking, discard-only, deprecated forms, IPv6
	// outside 2000::/3, local-use NAT64.
	ReasonReserved Reason = "reserved"
	// ReasonLocal: one of the host's own addresses (Config.Local) that is
	// not a relayed address of this relay.
	ReasonLocal Reason = "local"
	// ReasonDenyList: contained in Config.Deny.
	ReasonDenyList Reason = "deny_list"
	// ReasonInvalid: the zero netip.Addr or an address with an IPv6 zone.
	ReasonInvalid Reason = "invalid"
)

// Reasons returns every refusal reason (all but [Allowed]) in a fixed order,
// so a collector can pre-create one series per label.
func Reasons() []Reason {
	return []Reason{
		ReasonLoopback, ReasonUnspecified, ReasonPrivate, ReasonCGNAT,
		ReasonLinkLocal, ReasonMulticast, ReasonBroadcast, ReasonUniqueLocal,
		ReasonDocumentation, ReasonReserved, ReasonLocal,
		ReasonDenyList, ReasonInvalid, ReasonMetadata,
	}
}
