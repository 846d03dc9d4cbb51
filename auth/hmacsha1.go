package auth

import (
	"crypto/sha1" //nolint:gosec // TURN REST and STUN MESSAGE-INTEGRITY are defined on HMAC-SHA1.
	"hash"
	"sync"
)

// HMACSHA1 returns HMAC-SHA1(key, msg) (RFC 2104) computed with a pooled SHA-1 state: the
// same sum as crypto/hmac, without its allocations (two SHA-1 states, both pads and the sum
// per call). The relay computes one per TURN REST lookup and two per signed request, each
// with its own key, so a keyed state cannot be kept.
func HMACSHA1(key, msg []byte) [sha1.Size]byte {
	c := sha1MACs.Get().(*sha1MAC)
	sum := c.sum(key, msg)
	sha1MACs.Put(c)
	return sum
}

// hmacSHA1String is HMACSHA1 of a string message, copied into the pooled scratch space when
// it fits (a []byte conversion passed to hash.Hash.Write would allocate).
func hmacSHA1String(key []byte, msg string) [sha1.Size]byte {
	c := sha1MACs.Get().(*sha1MAC)
	var sum [sha1.Size]byte
	if len(msg) <= len(c.scratch) {
		n := copy(c.scratch[:], msg)
		sum = c.sum(key, c.scratch[:n])
	} else {
		sum = c.sum(key, []byte(msg))
	}
	sha1MACs.Put(c)
	return sum
}

type sha1MAC struct {
	h       hash.Hash
	pad     [sha1.BlockSize]byte
	inner   [sha1.Size]byte
	out     [sha1.Size]byte
	scratch [256]byte
}

var sha1MACs = sync.Pool{New: func() any { return &sha1MAC{h: sha1.New()} }}

// sum returns H((K ^ opad) || H((K ^ ipad) || msg)), K the key padded with zeros to the
// block size, or the key's hash first when the key is longer.
func (c *sha1MAC) sum(key, msg []byte) [sha1.Size]byte {
	if len(key) > sha1.BlockSize {
		c.h.Reset()
		c.h.Write(key)
		key = c.h.Sum(c.out[:0])
	}
	c.pad = [sha1.BlockSize]byte{}
	copy(c.pad[:], key)
	for i := range c.pad {
		c.pad[i] ^= 0x36
	}
	c.h.Reset()
	c.h.Write(c.pad[:])
	c.h.Write(msg)
	c.h.Sum(c.inner[:0])
	for i := range c.pad {
		c.pad[i] ^= 0x36 ^ 0x5c
	}
	c.h.Reset()
	c.h.Write(c.pad[:])
	c.h.Write(c.inner[:])
	c.h.Sum(c.out[:0])
	return c.out
}
