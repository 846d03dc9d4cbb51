// Package dataplane is the relay's forwarding: the workers and their two loops, the
// classification of every datagram, the fast-path table, the drop reasons and counters, the
// queues that hand datagrams to the control plane, and the bandwidth caps. It imports no
// pion: the control plane (package relay) drives it through a few concrete types — Table,
// Listener, Relay, Worker — and reads its counters at scrape time.
//
//	           ┌───────────────────────── Worker (one locked OS thread) ─────────────────────────┐
//	           │ epoll loop (epoll.go):   epoll_wait ─▶ recvmmsg ─┐          ┌─▶ sendmmsg (GSO)  │
//	socket ───▶│                                                  ├▶ classify ┤                  │───▶ socket
//	           │ io_uring loop (iouring.go): multishot recvmsg ───┘    │     └─▶ sendmsg SQE    │
//	           └───────────────────────────────────────────────────────┼─────────────────────────┘
//	                                   fromClient / fromPeer (classify.go)
//	                                   ├─ forward: Table lookup (table.go), header in place
//	                                   ├─ hand off: HandoffQueue (handoff.go) ─▶ control plane
//	                                   └─ drop: DropReason counted (stats.go)
//
// Start here: Worker.Start runs run (worker.go), which runs runEpoll or runUring; both call
// classify for each datagram and send what it returns themselves, so each loop's system calls
// stay in its own file.
//
// A worker waits for readiness itself, reads into buffers that have four bytes of headroom
// (so the ChannelData header of a peer→client packet is written in place), looks the packet
// up in the fast-path table (client 5-tuple + channel → relay socket + peer, and relay socket
// + peer → channel, kept in step with pion by the control plane), and sends. Per packet it
// allocates nothing, logs nothing, calls no Prometheus code, makes no interface call and
// takes no lock; its counters are atomics it owns, summed at scrape time (Stats.AddTo).
//
// A relay socket is closed only after a grace period (Worker.CloseRelay, Quiesce): any worker
// may hold its fd number between a lookup and the send, so every worker first reports a point
// at which it holds none, and only then does the owner close it; otherwise the number, reused
// by the next socket opened, would carry the payload elsewhere.
//
// Where the relay runs the kernel fast path (package kfast, an XDP program), channel-bound UDP
// traffic of offloaded allocations never reaches a worker: the Table mirrors its changes into
// the program's maps as it makes them (kernel.go, Table.SetKernel), and Kernel.AddTo adds what
// the program relayed and dropped to the same counters at scrape time.
//
// Where the kernel runs it (Linux 6.1 or later, io_uring not blocked), the worker uses an
// io_uring (package relay/internal/uring) instead of epoll: every socket has a multishot
// recvmsg armed that receives into a ring of provided buffers laid out with the same
// headroom, sends are sendmsg requests on the same ring, and one io_uring_enter per round
// submits the round's sends, receives what has arrived and waits. The classification and the
// table are the same code for both loops.
package dataplane
