//go:build linux && avedge_testhooks

package dataplane

import "sync/atomic"

// BeforeSend, when set, runs where a loop is about to send what it classified (see
// beforeSend): a test holds the window between a lookup and its send open with it. It exists
// only in builds with -tags avedge_testhooks.
var BeforeSend atomic.Pointer[func()]

func beforeSend() {
	if f := BeforeSend.Load(); f != nil {
		(*f)()
	}
}
