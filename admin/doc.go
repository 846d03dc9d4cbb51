// Package admin is the relay's operator API: JSON over HTTP on its own listener (and, if
// asked, a Unix socket), with bearer keys, for what an operator asks on a bad day: who is on
// this relay, how much are they sending, and can I cut one off.
//
// Start here: Handler serves the API (handler.go) over a Backend, which *relay.Server
// implements; Revocations (revocations.go) is the list of refused credentials, kept in a file
// a pool of relays shares and re-read on SIGHUP; Client (client.go) is what avedge-ctl and
// the tests call the API with. The types (types.go) are the JSON the API speaks, the one
// definition both sides use.
//
// Endpoints (all under /v1/, every answer JSON, errors as {"error": "..."}):
//
//	GET    /v1/status                  version, uptime, data path, workers, listeners, ports, allocations, draining
//	GET    /v1/allocations             live allocations; ?user=U&client=IP[:port]&limit=N&cursor=C
//	GET    /v1/allocations/{id}        one allocation
//	DELETE /v1/allocations/{id}        end it now
//	DELETE /v1/allocations?user=U      end every allocation of user U now
//	GET    /v1/revocations             the revoked credentials
//	POST   /v1/revocations             {"username": "..."}: refuse it (401) and end its allocations
//	DELETE /v1/revocations/{username}  lift a revocation
//	POST   /v1/drain, /v1/undrain      stop or resume taking new allocations
//	POST   /v1/reload                  what SIGHUP does: secrets, users, peer policy, revocations
//
// Nothing here touches the data plane: a listing reads the per-allocation counters the
// workers keep (atomics), an allocation is ended through the path its expiry takes.
package admin
