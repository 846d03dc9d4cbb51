// Package relay is avedge's STUN/TURN edge: the listeners, the adapters that plug our policy,
// credentials and port allocation into pion/turn, and the packet forwarding loop.
//
// Control and data are split. pion/turn owns the control plane (Allocate, Refresh,
// CreatePermission, ChannelBind, nonces, MESSAGE-INTEGRITY, lifetimes) and tells us what it
// decided through its EventHandler. This package owns the data plane: the real UDP sockets
// (one SO_REUSEPORT listener socket per worker for every listen address, and one relay socket
// per allocation, its port drawn from portalloc), and the workers that read them.
//
//	client ──UDP──▶ listener socket (one per worker) ──┬─ STUN/TURN ──▶ listenerConn ─▶ pion
//	                                                  └─ ChannelData ─▶ relay socket ─▶ peer
//	peer ──▶ relay socket (port from portalloc) ──┬─ bound channel ─▶ ChannelData ─▶ client
//	                                              └─ otherwise ─────▶ relayConn ─▶ pion (Data indication)
//
// A worker is one locked OS thread with its own epoll instance. It waits for readiness
// itself, reads with recvmmsg into a ring of buffers that have four bytes of headroom (so the
// ChannelData header of a peer→client packet is written in place), looks the packet up in
// the fast-path table (a plain table of client 5-tuple + channel → relay socket + peer, and
// relay socket + peer → channel, kept in step with pion's EventHandler), and queues the
// forwarded packet for one sendmmsg per destination socket at the end of the round. Per
// packet it allocates nothing, logs nothing, calls no Prometheus code and takes no lock; its
// counters are atomics owned by the worker and summed at scrape time.
//
// Where the kernel runs it (Linux 6.1 or later, io_uring not blocked), the worker uses an
// io_uring instead of epoll (Config.DataPath): every socket has a multishot recvmsg armed
// that receives into a ring of provided buffers laid out with the same headroom, sends are
// sendmsg requests on the same ring, and one io_uring_enter per round submits the round's
// sends, receives what has arrived and waits: one system call where the epoll loop makes one
// per ready socket plus epoll_wait and sendmmsg. The classification and the table are the
// same code for both loops.
//
// pion sees only what it must: STUN requests and indications arriving on a listener, and peer
// packets that are not on a bound channel, through the net.PacketConn facades listenerConn
// and relayConn. TCP and TLS clients are served by pion over ordinary net.Conns; their relay
// sockets are still ours.
package relay
