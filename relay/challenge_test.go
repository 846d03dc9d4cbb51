//go:build linux

package relay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
)

// challengeServer is the part of a Server that challenge and bindAnswerNonce read: one UDP
// listener, a fixed clock, the realm pion's answers carry.
func challengeServer(now time.Time) (*Server, *listenerShard) {
	s := &Server{cfg: Config{
		Realm:     compatRealm,
		Validator: auth.NewValidator(auth.ValidatorConfig{Keyring: auth.NewKeyring(auth.Secret{ID: "k1", Value: testSecret})}),
	}}
	s.nonces = newNonceSigner(func() time.Time { return now })
	g := &listenerGroup{addr: netip.MustParseAddrPort("127.0.0.1:3478"), srv: s}
	s.listeners = []*listenerGroup{g}
	return s, &listenerShard{g: g}
}

// The workers' 401 is byte for byte what pion's 401 to the same request leaves the relay as
// (pion's answer, its NONCE replaced by ours in bindAnswerNonce).
func TestChallengeIsPionsAnswer(t *testing.T) {
	addr, _ := startPlainPion(t, nil)
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, attrs := range [][]stun.Setter{
		{requestedTransportUDP},
		{requestedTransportUDP, stun.NewSoftware("test"), stun.Fingerprint},
		{requestedTransportUDP, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 2, 88}}, stun.RawAttribute{Type: stun.AttrDontFragment}},
	} {
		req := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)}, attrs...)...)
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 1500)
		n, err := conn.Read(got)
		if err != nil {
			t.Fatal(err)
		}
		pions := got[:n]
		if stunErrorCode(pions) != int(stun.CodeUnauthorized) {
			t.Fatalf("pion answered % x, want a 401", pions)
		}

		s, shard := challengeServer(time.Now())
		client := netip.MustParseAddrPort(conn.LocalAddr().String())
		want := s.bindAnswerNonce(append([]byte(nil), pions...), client, shard) // also keeps pion's nonce
		out := make([]byte, challengeMax)
		k := s.challenge(0, req.Raw, client, out)
		if k <= 0 || !bytes.Equal(out[:k], want) {
			t.Fatalf("challenge = %d, % x\nwant % x", k, out[:max(k, 0)], want)
		}
	}
}

// challenge leaves to pion every request pion would not answer with exactly that 401, and
// drops an Allocate over its source's rate.
func TestChallengeDeclines(t *testing.T) {
	now := time.Now()
	client := netip.MustParseAddrPort("192.0.2.7:4000")
	build := func(typ stun.MessageType, attrs ...stun.Setter) []byte {
		return stun.MustBuild(append([]stun.Setter{stun.TransactionID, typ}, attrs...)...).Raw
	}
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	plain := build(allocate, requestedTransportUDP)
	signed := build(allocate, requestedTransportUDP, stun.NewUsername("u"), stun.NewRealm(compatRealm), stun.NewNonce("n"),
		stun.NewShortTermIntegrity("p"))
	unknown := build(allocate, requestedTransportUDP, stun.RawAttribute{Type: 0x7f01, Value: []byte{1}})
	badCookie := append([]byte(nil), plain...)
	badCookie[4] ^= 0xff
	truncated := plain[:len(plain)-2]
	long := build(allocate, requestedTransportUDP, stun.NewSoftware(string(bytes.Repeat([]byte{'x'}, 700))),
		stun.RawAttribute{Type: stun.AttrData, Value: make([]byte, 900)})

	kept := &pionNonce{padded: fmt.Sprintf("%032d", 7), at: now}
	for _, tc := range []struct {
		name  string
		req   []byte
		setup func(s *Server)
		want  int // 1: answered
	}{
		{"plain allocate", plain, nil, 1},
		{"signed", signed, nil, 0},
		{"unknown required attribute", unknown, nil, 0},
		{"bad magic cookie", badCookie, nil, 0},
		{"attributes past the end", truncated, nil, 0},
		{"over pion's read size", long, nil, 0},
		{"refresh", build(stun.NewType(stun.MethodRefresh, stun.ClassRequest)), nil, 0},
		{"binding", build(stun.BindingRequest), nil, 0},
		{"draining", plain, func(s *Server) { s.draining.Store(true) }, 0},
		{"no pion nonce yet", plain, func(s *Server) { s.pionNonce.Store(nil) }, 0},
		{"stale pion nonce", plain, func(s *Server) {
			s.pionNonce.Store(&pionNonce{padded: kept.padded, at: now.Add(-pionNonceMaxAge - time.Second)})
		}, 0},
		{"no validator", plain, func(s *Server) { s.cfg.Validator = nil }, 0},
		{"tcp relay", build(allocate, stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{tcpProtocol, 0, 0, 0}}), nil, 0},
		{"no requested transport", build(allocate), nil, 0},
		{"redirected", plain, func(s *Server) {
			s.cfg.Redirect = func(netip.AddrPort, bool) (netip.AddrPort, bool) {
				return netip.MustParseAddrPort("192.0.2.9:3478"), true
			}
		}, 0},
		{"not redirected", plain, func(s *Server) {
			s.cfg.Redirect = func(netip.AddrPort, bool) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
		}, 1},
		{"unknown listener", plain, func(s *Server) { s.listeners = nil }, 0},
		{"over the allocate rate", plain, func(s *Server) {
			s.allocLimit = newRateLimit(1)
			for s.allocLimit.Allow(client.Addr(), time.Now().UnixNano()) {
			}
		}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := challengeServer(now)
			s.pionNonce.Store(kept)
			if tc.setup != nil {
				tc.setup(s)
			}
			got := s.challenge(0, tc.req, client, make([]byte, challengeMax))
			if got > 0 {
				got = 1
			}
			if got != tc.want {
				t.Fatalf("challenge = %d, want %d", got, tc.want)
			}
		})
	}
}

// Allocations through a relay: the first 401 is pion's (it brings the pion nonce the relay
// puts in place of ours), the workers answer the challenges after it, and pion's client
// allocates with the nonce they gave it.
func TestChallengeAnsweredByWorkers(t *testing.T) {
	forEachDataPath(t, func(t *testing.T, path DataPath) {
		s := startServerOn(t, path, nil)
		const n = 5
		for i := range n {
			c := newClient(t, s, fmt.Sprintf("user%d", i))
			relay, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocation %d: %v", i, err)
			}
			_ = relay.Close()
		}
		var answered uint64
		for _, w := range s.workers {
			answered += w.Stats().Challenges()
		}
		if answered < n-1 {
			t.Fatalf("workers answered %d challenges of %d allocations, want at least %d", answered, n, n-1)
		}
	})
}
