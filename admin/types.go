package admin

import "time"

// Allocation is one live allocation as the API reports it.
type Allocation struct {
	// ID names the allocation for GET and DELETE /v1/allocations/{id}; never reused while
	// the relay runs.
	ID string `json:"id"`
	// User is the credential's user (a TURN REST username's user part, a static user's name).
	User string `json:"user"`
	// Client is the client's address as the relay sees it, Transport how it reached the
	// relay (udp, tcp, tls), Listener the relay address it reached.
	Client    string `json:"client"`
	Transport string `json:"transport"`
	Listener  string `json:"listener"`
	// Relayed are the relayed transport addresses (XOR-RELAYED-ADDRESS, as advertised).
	Relayed []string `json:"relayed"`
	// RelayedTransport is the relayed addresses' transport: "udp", or "tcp" for an RFC
	// 6062 TCP allocation.
	RelayedTransport string `json:"relayed_transport"`
	// TCPConnections are an RFC 6062 TCP allocation's peer data connections.
	TCPConnections []TCPConnection `json:"tcp_connections,omitempty"`
	// Permissions are the peer IP addresses with a permission; Channels the bound channels.
	Permissions []string  `json:"permissions"`
	Channels    []Channel `json:"channels"`
	// Created is when the allocation was made; AgeSeconds how long ago.
	Created    time.Time `json:"created"`
	AgeSeconds float64   `json:"age_seconds"`
	// Expires is when the allocation ends unless refreshed (zero: not known yet).
	Expires time.Time `json:"expires,omitzero"`
	// ClientToPeer and PeerToClient are what the allocation relayed, payload bytes.
	ClientToPeer Traffic `json:"client_to_peer"`
	PeerToClient Traffic `json:"peer_to_client"`
	// DataPath is what forwards its channel data: "io_uring" or "epoll" (the workers, UDP
	// clients), "pion" (TCP and TLS clients, through the control plane), "tcp" (an RFC 6062
	// TCP allocation's connections, spliced).
	DataPath string `json:"data_path"`
}

// TCPConnection is one peer data connection of an RFC 6062 TCP allocation: to or from Peer,
// bound to a client data connection by a ConnectionBind or waiting for one, and the bytes
// it relayed each way.
type TCPConnection struct {
	Peer         string `json:"peer"`
	Bound        bool   `json:"bound"`
	ClientToPeer uint64 `json:"client_to_peer_bytes"`
	PeerToClient uint64 `json:"peer_to_client_bytes"`
}

// Channel is a bound channel.
type Channel struct {
	Number uint16 `json:"number"`
	Peer   string `json:"peer"`
}

// Traffic is one direction of an allocation's relayed data. RateBps is bytes per second over
// the time since this allocation was last read through the API (at least a second; on the
// first read, since it was made).
type Traffic struct {
	Packets uint64  `json:"packets"`
	Bytes   uint64  `json:"bytes"`
	RateBps float64 `json:"rate_bps"`
}

// AllocationPage is one page of GET /v1/allocations. Next is the cursor of the next page,
// empty on the last one.
type AllocationPage struct {
	Allocations []Allocation `json:"allocations"`
	Next        string       `json:"next,omitempty"`
}

// Query filters and pages GET /v1/allocations.
type Query struct {
	// User keeps the allocations of this user only ("": all).
	User string
	// Client keeps the allocations of this client: an IP address (any port) or an
	// address and port.
	Client string
	// Limit is the page size: 1 to MaxLimit; 0: DefaultLimit.
	Limit int
	// After is the cursor: only allocations whose ID sorts after it (numerically).
	After uint64
}

// Page sizes of GET /v1/allocations.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Ended is the answer to DELETE /v1/allocations (by user) and to a revocation: how many
// allocations were ended.
type Ended struct {
	Ended int `json:"ended"`
}

// Status is GET /v1/status.
type Status struct {
	Version       string     `json:"version"`
	Started       time.Time  `json:"started"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	DataPath      string     `json:"data_path"`
	Workers       int        `json:"workers"`
	Listeners     []Listener `json:"listeners"`
	Ports         Ports      `json:"ports"`
	Allocations   int        `json:"allocations"`
	Draining      bool       `json:"draining"`
	Revocations   int        `json:"revocations"`
}

// Listener is one TURN listener as bound.
type Listener struct {
	Transport string `json:"transport"`
	Addr      string `json:"addr"`
}

// Ports counts the relay range: Total ports, Used (held by allocations, reserved by
// EVEN-PORT or resting in quarantine) and Free.
type Ports struct {
	Total int `json:"total"`
	Used  int `json:"used"`
	Free  int `json:"free"`
}

// Revocation is one refused credential.
type Revocation struct {
	// Username is what was revoked: a user (every credential of it: static user, TURN REST
	// and MRAS usernames whose user part it is) or one TURN REST / MRAS username.
	Username string `json:"username"`
	// Until is when the revocation lapses: a revoked username's own expiry (it is refused
	// anyway after), or what the request asked; zero: until it is lifted.
	Until time.Time `json:"until,omitzero"`
	// Created is when it was revoked.
	Created time.Time `json:"created"`
	// Reason is the operator's note, if any.
	Reason string `json:"reason,omitempty"`
}

// RevokeRequest is the body of POST /v1/revocations.
type RevokeRequest struct {
	Username string `json:"username"`
	// Until, if set, ends the revocation then (RFC 3339); for a username with an expiry of
	// its own, the earlier of the two.
	Until  time.Time `json:"until,omitzero"`
	Reason string    `json:"reason,omitempty"`
}

// RevokeResult is the answer to POST /v1/revocations.
type RevokeResult struct {
	Revocation Revocation `json:"revocation"`
	Ended      int        `json:"ended"`
	// Warning says the revocation applies on this relay but was not written to the file.
	Warning string `json:"warning,omitempty"`
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}
