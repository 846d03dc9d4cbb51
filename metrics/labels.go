package metrics

// Every label of every avedge metric takes its value from one of the bounded
// sets below. The relay and the credential service use these constants so
// that the strings they pass are the strings the dashboard queries.

// LabelOther is the value an unknown label value is counted under.
const LabelOther = "other"

// Pair labels of the TLS certificate metrics: the TURN TLS listeners' pair
// (cert, pkey) and the built-in credential service's (auth-tls-cert,
// auth-tls-key).
const (
	TLSPairTURN              = "turn"
	TLSPairCredentialService = "credential_service"
	TLSPairAdmin             = "admin"
)

// Transport indexes [Snapshot.Allocations] by the transport between client
// and relay.
type Transport uint8

// Transports, in index order.
const (
	TransportUDP Transport = iota
	TransportTCP
	TransportTLS

	numTransports = 3
)

var transportLabels = [numTransports]string{"udp", "tcp", "tls"}

// String returns the transport's label value: "udp", "tcp" or "tls".
func (t Transport) String() string {
	if int(t) < len(transportLabels) {
		return transportLabels[t]
	}
	return LabelOther
}

// Family indexes [Snapshot.Allocations] by the address family of the relayed
// transport address.
type Family uint8

// Families, in index order.
const (
	FamilyIPv4 Family = iota
	FamilyIPv6

	numFamilies = 2
)

var familyLabels = [numFamilies]string{"ipv4", "ipv6"}

// String returns the family's label value: "ipv4" or "ipv6".
func (f Family) String() string {
	if int(f) < len(familyLabels) {
		return familyLabels[f]
	}
	return LabelOther
}

// Direction indexes [Snapshot.Traffic] by the way the data flowed.
type Direction uint8

// Directions, in index order. They index the relay's counters too: this is the one
// definition of the direction indices.
const (
	ClientToPeer Direction = iota
	PeerToClient

	// NumDirections is how many directions there are.
	NumDirections = 2
)

var directionLabels = [NumDirections]string{"client_to_peer", "peer_to_client"}

// String returns the direction's label value: "client_to_peer" or
// "peer_to_client".
func (d Direction) String() string {
	if int(d) < len(directionLabels) {
		return directionLabels[d]
	}
	return LabelOther
}

// Path indexes [Snapshot.Traffic] by how the client side framed the data:
// ChannelData on a bound channel, Send/Data indications, or the byte stream of an RFC 6062
// TCP relay connection (whose packets are not counted: a stream has none).
type Path uint8

// Paths, in index order. They index the relay's counters too: this is the one definition
// of the path indices.
const (
	PathChannel Path = iota
	PathIndication
	PathTCP

	// NumPaths is how many paths there are.
	NumPaths = 3
)

var pathLabels = [NumPaths]string{"channel", "indication", "tcp"}

// String returns the path's label value: "channel", "indication" or "tcp".
func (p Path) String() string {
	if int(p) < len(pathLabels) {
		return pathLabels[p]
	}
	return LabelOther
}

// TCPLimit indexes [TCPRelayStats.LimitRefused]: the cap on RFC 6062 TCP relay peer
// connections that refused one (max-tcp-relay-connections, -per-user, -per-allocation).
type TCPLimit uint8

// TCP relay limits, in index order.
const (
	TCPLimitTotal TCPLimit = iota
	TCPLimitUser
	TCPLimitAllocation

	// NumTCPLimits is how many TCP relay limits there are.
	NumTCPLimits = 3
)

var tcpLimitLabels = [NumTCPLimits]string{"total", "per_user", "per_allocation"}

// String returns the limit's label value: "total", "per_user" or "per_allocation".
func (l TCPLimit) String() string {
	if int(l) < len(tcpLimitLabels) {
		return tcpLimitLabels[l]
	}
	return LabelOther
}

// TCPPolicyStage indexes [TCPRelayStats.PolicyRefused]: where the peer policy refused an
// RFC 6062 TCP relay connection.
type TCPPolicyStage uint8

// TCP relay policy stages, in index order.
const (
	TCPPolicyConnect TCPPolicyStage = iota // a Connect request: answered 403, no SYN sent
	TCPPolicyInbound                       // a peer's connection to a relayed TCP address: closed at accept
	TCPPolicyReload                        // a live peer connection a reloaded policy refuses: closed

	// NumTCPPolicyStages is how many stages there are.
	NumTCPPolicyStages = 3
)

var tcpPolicyLabels = [NumTCPPolicyStages]string{"connect", "inbound", "reload"}

// String returns the stage's label value: "connect", "inbound" or "reload".
func (p TCPPolicyStage) String() string {
	if int(p) < len(tcpPolicyLabels) {
		return tcpPolicyLabels[p]
	}
	return LabelOther
}

// ProxyRefusal indexes [Snapshot.ProxyRefused]: why a PROXY protocol listener closed a
// connection.
type ProxyRefusal uint8

// PROXY protocol refusals, in index order.
const (
	ProxyNotFromProxy  ProxyRefusal = iota // the connection's source is not in proxy-protocol-from
	ProxyNoHeader                          // it starts with no PROXY signature, or ends before any byte
	ProxyInvalidHeader                     // a malformed, oversized or cut-short header
	ProxyTimeout                           // no complete header within the header timeout

	// NumProxyRefusals is how many refusal reasons there are.
	NumProxyRefusals = 4
)

var proxyRefusalLabels = [NumProxyRefusals]string{"not_from_proxy", "no_header", "invalid_header", "timeout"}

// String returns the reason's label value: "not_from_proxy", "no_header", "invalid_header"
// or "timeout".
func (r ProxyRefusal) String() string {
	if int(r) < len(proxyRefusalLabels) {
		return proxyRefusalLabels[r]
	}
	return LabelOther
}

// Port states of avedge_relay_ports{state}.
const (
	PortsHeld        = "held"
	PortsReserved    = "reserved"
	PortsQuarantined = "quarantined"
)

// Drop reasons of avedge_dropped_packets_total{reason}, the keys of
// [Snapshot.Drops]. A key outside this set is added to "other".
const (
	DropNoPermission = "no_permission" // peer address has no permission on the allocation
	DropNoChannel    = "no_channel"    // ChannelData for a channel number that is not bound
	DropTooLarge     = "too_large"     // datagram larger than the relay forwards
	DropQuota        = "quota"         // over a bandwidth or packet-rate quota
	DropPolicy       = "policy"        // peer address refused by policy (e.g. a private range)
	DropMalformed    = "malformed"     // framing that does not parse
	DropSendError    = "send_error"    // the kernel refused the send
	DropNoAllocation = "no_allocation" // data for a 5-tuple with no allocation
	DropQueueFull    = "queue_full"    // the control plane (pion) fell behind its share of packets
	DropRateLimited  = "rate_limited"  // an Allocate request or a 401 answer over its per-source rate
)

var dropReasons = []string{
	DropNoPermission, DropNoChannel, DropTooLarge, DropQuota, DropPolicy,
	DropMalformed, DropSendError, DropNoAllocation, DropQueueFull, DropRateLimited, LabelOther,
}

// Results of avedge_allocation_attempts_total{result}, passed to
// [Metrics.AllocationAttempt].
const (
	AttemptOK         = "ok"          // allocation created
	AttemptAuth       = "auth"        // credentials missing, stale or wrong
	AttemptQuota      = "quota"       // the user or client is at its allocation quota
	AttemptCapacity   = "capacity"    // no relay port free
	AttemptBadRequest = "bad_request" // malformed or unsupported request
	AttemptPolicy     = "policy"      // refused by policy
	AttemptDraining   = "draining"    // the relay is draining
)

var attemptResults = []string{
	AttemptOK, AttemptAuth, AttemptQuota, AttemptCapacity, AttemptBadRequest,
	AttemptPolicy, AttemptDraining, LabelOther,
}

// Reasons of avedge_allocations_ended_total{reason}, passed to
// [Metrics.AllocationEndedBy].
const (
	EndNormal  = "normal"  // expired, released by the client (Refresh 0), or closed at shutdown
	EndAdmin   = "admin"   // ended through the admin API
	EndRevoked = "revoked" // its credential was revoked
)

var endReasons = []string{EndNormal, EndAdmin, EndRevoked, LabelOther}

// Reasons of avedge_auth_failures_total{reason}, passed to
// [Metrics.AuthFailure].
const (
	AuthExpired     = "expired"      // the credential's expiry has passed
	AuthForged      = "forged"       // MESSAGE-INTEGRITY does not match the derived key
	AuthLockedOut   = "locked_out"   // a static user refused after too many wrong passwords
	AuthMalformed   = "malformed"    // the username does not parse
	AuthRevoked     = "revoked"      // the credential or its user was revoked (admin API, revocations file)
	AuthStaleNonce  = "stale_nonce"  // the NONCE was issued to another 5-tuple, has expired, or is not the relay's
	AuthUnknownKey  = "unknown_key"  // the key id names no live secret
	AuthUnknownUser = "unknown_user" // no such user
)

var authReasons = []string{
	AuthExpired, AuthForged, AuthLockedOut, AuthMalformed, AuthRevoked, AuthStaleNonce, AuthUnknownKey, AuthUnknownUser,
	LabelOther,
}

// APIs of avedge_credential_requests_total{api}, passed to
// [Metrics.CredentialRequest].
const (
	CredentialAPIMRAS = "mras" // MRAS credentialsRequest XML
	CredentialAPIJSON = "json" // TURN REST JSON
)

var credentialAPIs = []string{CredentialAPIMRAS, CredentialAPIJSON, LabelOther}

// Results of avedge_credential_requests_total{result}, passed to
// [Metrics.CredentialRequest].
const (
	CredentialOK           = "ok"           // credentials issued
	CredentialBadRequest   = "bad_request"  // the request does not parse
	CredentialUnauthorized = "unauthorized" // the caller is not allowed credentials
	CredentialError        = "error"        // the service failed
)

var credentialResults = []string{
	CredentialOK, CredentialBadRequest, CredentialUnauthorized, CredentialError,
	LabelOther,
}

// bounded returns v if it is one of allowed, else LabelOther. The sets are
// a handful of values long, so a scan beats a map.
func bounded(v string, allowed []string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return LabelOther
}
