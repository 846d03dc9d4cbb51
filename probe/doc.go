// Package probe sees the edge the way a client does: it gathers ICE
// candidates (host, server reflexive, relay) against STUN and TURN servers
// with pion/ice, attributes every candidate to the server it came from, and
// learns why a server failed (401, timeout, refused, TLS) by trying each TURN
// URL directly with a bounded Allocate on pion/turn's client. Check connects
// two relay-only ICE agents through the edge in-process and measures the call
// path: selected pair, time to connected, round-trip percentiles and loss.
//
// Credentials come from the credential service (FetchCredentials: the MRAS
// XML API or the TURN REST JSON API, with a bearer API key) or from the caller
// (a username and password, or a TURN REST secret minted with auth.MintREST).
//
// Everything is bounded: Gather and Check stop at Config.Timeout whatever the
// servers do, and every goroutine they start has ended when they return.
package probe
