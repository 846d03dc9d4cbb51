package policy

import (
	"net/netip"
	"testing"
)

func BenchmarkCheck(b *testing.B) {
	lists := testPolicies(b)["lists"]
	def := New(Config{})
	cases := []struct {
		name string
		p    *Policy
		addr string
	}{
		{"v4-public/default", def, "8.8.8.8"},
		{"v4-private/default", def, "192.168.1.1"},
		{"v6-public/default", def, "2606:4700:4700::1111"},
		{"v6-teredo/default", def, "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
		{"v4-mapped/default", def, "::ffff:8.8.8.8"},
		{"v4-public/lists", lists, "8.8.8.8"},
		{"v6-public/lists", lists, "2606:4700:4700::1111"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ip := netip.MustParseAddr(c.addr)
			b.ReportAllocs()
			for b.Loop() {
				_ = c.p.Check(ip)
			}
		})
	}
}

func BenchmarkBucketTake(b *testing.B) {
	const pkt = 1200
	b.Run("serial", func(b *testing.B) {
		bk := NewBucket(1<<40, 1<<30)
		b.ReportAllocs()
		b.SetBytes(pkt)
		var now int64
		for b.Loop() {
			now += 100
			bk.Take(pkt, now)
		}
	})
	b.Run("parallel-shared", func(b *testing.B) {
		bk := NewBucket(1<<40, 1<<30)
		b.ReportAllocs()
		b.SetBytes(pkt)
		b.RunParallel(func(pb *testing.PB) {
			var now int64
			for pb.Next() {
				now += 100
				bk.Take(pkt, now)
			}
		})
	})
	b.Run("unlimited", func(b *testing.B) {
		var bk Bucket
		b.ReportAllocs()
		b.SetBytes(pkt)
		for b.Loop() {
			bk.Take(pkt, 0)
		}
	})
}

func BenchmarkLimiterAllow(b *testing.B) {
	keys := make([]netip.Addr, 1024)
	for i := range keys {
		keys[i] = addrN(i)
	}
	for _, size := range []struct {
		name    string
		maxKeys int
	}{{"hit", 2048}, {"evict", 256}} {
		b.Run(size.name, func(b *testing.B) {
			l := NewLimiter(10, 20, size.maxKeys)
			b.ReportAllocs()
			var now int64
			i := 0
			for b.Loop() {
				now += 1000
				l.Allow(keys[i&1023], now)
				i++
			}
		})
	}
}
