// Package relay is avedge's STUN/TURN edge: the listeners, the adapters that plug our policy,
// credentials and port allocation into pion/turn, and the facades through which pion sees
// the sockets that the forwarding loops (package relay/internal/dataplane) read.
//
// Start here. The data path, in the order a packet meets it: New (server.go) opens one
// SO_REUSEPORT socket per worker for every UDP listen address (listenUDP) and starts the
// workers; a worker (dataplane.Worker) reads each datagram and classifies it (fromClient,
// fromPeer in dataplane/classify.go); ChannelData on a bound channel and peer data for one go
// straight out again through the fast-path table (dataplane/table.go); a plain Binding
// request is answered by the worker itself (dataplane/binding.go); everything else is handed
// to pion through the facades: the shards of a listenerGroup (udp.go) for STUN from clients,
// relayConn (relayconn.go) for peer data without a channel. Both facades and the stream one
// (framedConn, stream.go) pass STUN through intercept.go on its way to and from pion. pion's
// decisions come back through the EventHandler (events.go), which keeps the fast-path table
// in step; relay sockets are made by relayGen (relaygen.go).
//
// Control and data are split. pion/turn owns the control plane (Allocate, Refresh,
// CreatePermission, ChannelBind, nonces, MESSAGE-INTEGRITY, lifetimes) and tells us what it
// decided through its EventHandler. The data plane owns the real UDP sockets (one
// SO_REUSEPORT listener socket per worker for every listen address, and one relay socket per
// allocation, its port drawn from portalloc) and the workers that read them.
//
//	client ──UDP──▶ listener socket (one per worker) ──┬─ Binding ─────▶ answered by the worker
//	                                                  ├─ STUN/TURN ──▶ listenerShard ─▶ pion (one per shard)
//	                                                  └─ ChannelData ─▶ relay socket ─▶ peer
//	peer ──▶ relay socket (port from portalloc) ──┬─ bound channel ─▶ ChannelData ─▶ client
//	                                              └─ otherwise ─────▶ relayConn ─▶ pion (Data indication)
//
// pion sees only what it must: STUN requests and indications arriving on a listener, and peer
// packets that are not on a bound channel, through the net.PacketConn facades listenerShard
// and relayConn. Floods are kept off live calls: each UDP listen address has several pion
// read loops (shards; a client's IP address picks its shard), the requests of clients with a
// live allocation go ahead of new work in their shard's queue, new work is handled by a
// bounded number of shards at once, and a per-source limit drops the excess of Binding
// answers and of requests from clients without an allocation before anything is queued. TCP and TLS clients are served by pion over ordinary net.Conns (framedConn);
// their relay sockets are still ours. RFC 6062 TCP allocations (tcprelay.go) relay to peers
// over TCP: pion runs Connect, ConnectionAttempt and ConnectionBind, the relay owns the
// relayed listening socket and the peer connections and splices a bound pair's bytes
// between the two sockets. The few places where the relay relies on how pion
// behaves, rather than on its API, are listed in pioncompat.go, each with a test against pion
// itself.
//
// Files: server.go (the Server and its lifecycle), relaygen.go (pion's RelayAddressGenerator),
// events.go (pion's EventHandler), auth.go (pion's AuthHandler), peers.go (the peer policy),
// pionlog.go (pion's logger), udp.go, relayconn.go and stream.go (the facades), intercept.go
// (what the facades do to STUN), nonce.go (nonces bound to the client's 5-tuple, swapped
// for pion's on the way in), logsample.go (log lines input causes, sampled), stunwire.go
// (byte-level STUN checks), tcprelay.go (RFC 6062 TCP allocations), pioncompat.go,
// admin.go (the admin API's backend: listing, ending and revoking allocations, status).
package relay
