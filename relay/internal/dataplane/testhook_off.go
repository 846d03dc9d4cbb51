//go:build linux && !avedge_testhooks

package dataplane

// beforeSend runs where a loop is about to send what its round classified: the epoll loop's
// flush at the end of a round, the io_uring loop's io_uring_enter that submits the round's
// sends. It is empty, and
// inlined away, unless the tests are built with -tags avedge_testhooks (testhook_on.go).
func beforeSend() {}
