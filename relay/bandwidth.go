package relay

import (
	"time"

	"github.com/avedge/avedge/relay/policy"
)

// bandwidth is an allocation's byte-rate cap. The zero value is unlimited and costs one nil
// check per packet.
type bandwidth struct{ b *policy.Bucket }

func (b *bandwidth) init(bytesPerSecond int64) {
	if bytesPerSecond > 0 {
		b.b = policy.NewBucket(bytesPerSecond, bytesPerSecond)
	}
}

func (b *bandwidth) over(n int) bool {
	return b.b != nil && !b.b.Take(n, time.Now().UnixNano())
}
