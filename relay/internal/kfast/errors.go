//go:build linux

package kfast

import "errors"

// ErrUnavailable is returned (wrapped, with the kernel's reason) by New when BPF cannot be
// used: no CAP_BPF / CAP_NET_ADMIN (or root), BPF disabled or not built in. Any other error of
// New (the verifier refusing the program on an older kernel, say) is not wrapped in it.
var ErrUnavailable = errors.New("kfast: kernel fast path unavailable")

// ErrFamily is returned by PutChannel for a channel whose client and peer sides are of
// different families (RFC 6156): user space relays those.
var ErrFamily = errors.New("kfast: client and peer sides of different address families")

// ErrSlots is returned by NewSlot when every allocation slot is taken.
var ErrSlots = errors.New("kfast: no free allocation slot")
