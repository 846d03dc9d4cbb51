package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the sums under test are HMAC-SHA1
	"testing"
)

// HMACSHA1 is crypto/hmac's HMAC-SHA1 for keys shorter than, as long as and longer than
// SHA-1's block, for messages that fit the scratch space and do not, with pooled states
// reused across all of them.
func TestHMACSHA1(t *testing.T) {
	msg := []byte("1700000000:alice")
	for _, n := range []int{0, 1, 16, 63, 64, 65, 200} {
		key := bytes.Repeat([]byte{byte(n + 1)}, n)
		for _, m := range [][]byte{nil, msg, bytes.Repeat(msg, 16), bytes.Repeat(msg, 17)} {
			want := hmac.New(sha1.New, key)
			want.Write(m)
			if got := HMACSHA1(key, m); !bytes.Equal(got[:], want.Sum(nil)) {
				t.Fatalf("key of %d bytes, message of %d: %x, want %x", n, len(m), got, want.Sum(nil))
			}
			if got := hmacSHA1String(key, string(m)); !bytes.Equal(got[:], want.Sum(nil)) {
				t.Fatalf("string message: key of %d bytes, message of %d: %x, want %x", n, len(m), got, want.Sum(nil))
			}
		}
	}
}
