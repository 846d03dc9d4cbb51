package probe

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// BenchmarkPingEcho is the check's per-packet work on the echoing side:
// validate a ping byte for byte and turn it into an echo (the one
// allocation is the in-memory pipe copying the packet).
func BenchmarkPingEcho(b *testing.B) {
	a, peer := newLoopPair()
	cc := CheckConfig{Count: 1, Size: DefaultSize}.withDefaults()
	p := newPinger(a, 1, cc, time.Now)
	ping := make([]byte, cc.Size)
	fillPing(ping, kindPing, 0, 42)
	buf := make([]byte, cc.Size)
	b.ReportAllocs()
	b.SetBytes(int64(cc.Size))
	for b.Loop() {
		copy(buf, ping)
		p.handle(buf)
		<-peer.in
	}
}

func BenchmarkParseMRASAnswer(b *testing.B) {
	doc := `<response xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" version="2.0" reasonPhrase="OK"><credentialsResponse credentialsRequestID="1"><credentials><username>mras1:k1:1900000000:YWxpY2U</username><password>cGFzcw==</password><duration>480</duration></credentials><mediaRelayList>` +
		strings.Repeat(`<mediaRelay><location>internet</location><hostName>edge.example.com</hostName><udpPort>3478</udpPort><tcpPort>443</tcpPort></mediaRelay>`, 4) +
		`</mediaRelayList></credentialsResponse></response>`
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := ParseMRASAnswer(bytes.NewReader([]byte(doc))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewPercentiles(b *testing.B) {
	src := make([]time.Duration, 10000)
	for i := range src {
		src[i] = time.Duration((i*7919)%10000) * time.Microsecond
	}
	s := make([]time.Duration, len(src))
	b.ReportAllocs()
	b.SetBytes(int64(len(src)) * 8)
	for b.Loop() {
		copy(s, src)
		NewPercentiles(s)
	}
}
