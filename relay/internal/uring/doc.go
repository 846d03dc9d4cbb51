// Package uring is a minimal io_uring, just what the relay's forwarding loop needs: multishot
// recvmsg into a ring of provided buffers, sendmsg, a multishot poll and cancellation, over
// raw system calls (x/sys has no io_uring; this is small enough that we did not take a
// third-party port).
//
// A Ring belongs to one OS thread, its only submitter. The caller prepares requests on
// entries from SQE, submits and waits with Enter, and handles completions with Reap, which
// hands each CQE to a function and returns the slots to the kernel; no caller reads the
// rings' heads and tails. Usable says, once per process, whether this kernel runs all of it.
package uring
