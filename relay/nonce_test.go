//go:build linux

package relay

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/policy"
)

// A nonce is valid for the 5-tuple it was minted for, and for nonceLifetime.
func TestNonceSigner(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n := newNonceSigner(func() time.Time { return now })
	local := netip.MustParseAddrPort("127.0.0.1:3478")
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	nonce := n.mint(false, local, client)
	if len(nonce) != nonceLen {
		t.Fatalf("nonce %q is %d long, want %d", nonce, len(nonce), nonceLen)
	}
	if !n.valid([]byte(nonce), false, local, client) {
		t.Fatal("a fresh nonce is refused from its own 5-tuple")
	}
	for _, tc := range []struct {
		name          string
		stream        bool
		local, client string
	}{
		{"another client port", false, "127.0.0.1:3478", "127.0.0.1:40001"},
		{"another client address", false, "127.0.0.1:3478", "127.0.0.2:40000"},
		{"another listener", false, "127.0.0.1:3479", "127.0.0.1:40000"},
		{"a stream", true, "127.0.0.1:3478", "127.0.0.1:40000"},
		{"IPv6", false, "[::1]:3478", "[::1]:40000"},
	} {
		if n.valid([]byte(nonce), tc.stream, netip.MustParseAddrPort(tc.local), netip.MustParseAddrPort(tc.client)) {
			t.Errorf("%s: nonce accepted", tc.name)
		}
	}
	// IPv4-mapped addresses are the same client.
	if !n.valid([]byte(nonce), false, netip.MustParseAddrPort("[::ffff:127.0.0.1]:3478"), netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000")) {
		t.Error("the IPv4-mapped form of the 5-tuple is refused")
	}
	for _, bad := range []string{"", "x", nonce[:nonceLen-1], nonce + "A", string(bytes.Repeat([]byte{'-'}, nonceLen)), "0000000" + nonce[7:]} {
		if n.valid([]byte(bad), false, local, client) {
			t.Errorf("nonce %q accepted", bad)
		}
	}
	other := newNonceSigner(func() time.Time { return now })
	if other.valid([]byte(nonce), false, local, client) {
		t.Error("another process's nonce accepted")
	}
	now = now.Add(nonceLifetime)
	if !n.valid([]byte(nonce), false, local, client) {
		t.Error("refused at the end of its lifetime")
	}
	now = now.Add(time.Second)
	if n.valid([]byte(nonce), false, local, client) {
		t.Error("accepted past its lifetime")
	}
}

// resign leaves a message whose NONCE was replaced with a MESSAGE-INTEGRITY and FINGERPRINT
// that pion/stun's own checks accept.
func TestResign(t *testing.T) {
	key := turn.GenerateAuthKey("alice", "avedge", "pw")
	for _, fp := range []bool{false, true} {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			requestedTransportUDP, stun.NewUsername("alice"), stun.NewRealm("avedge"),
			stun.NewNonce(string(bytes.Repeat([]byte{'a'}, nonceLen))), stun.MessageIntegrity(key)}
		if fp {
			setters = append(setters, stun.Fingerprint)
		}
		m := stun.MustBuild(setters...)
		raw := append([]byte(nil), m.Raw...)
		nOff, nLen, ok := findAttr(raw, stun.AttrNonce)
		miOff, _, ok2 := findAttrHeader(raw, stun.AttrMessageIntegrity)
		if !ok || !ok2 || nLen != nonceLen {
			t.Fatalf("attributes not found: nonce %v (%d), integrity %v", ok, nLen, ok2)
		}
		copy(raw[nOff:], bytes.Repeat([]byte{'0'}, nonceLen))
		resign(raw, miOff, key)
		got := &stun.Message{Raw: raw}
		if err := got.Decode(); err != nil {
			t.Fatal(err)
		}
		if err := stun.MessageIntegrity(key).Check(got); err != nil {
			t.Errorf("fingerprint %v: MESSAGE-INTEGRITY: %v", fp, err)
		}
		if fp {
			if err := stun.Fingerprint.Check(got); err != nil {
				t.Errorf("FINGERPRINT: %v", err)
			}
		}
		var n stun.Nonce
		if n.GetFrom(got) != nil || string(n) != string(bytes.Repeat([]byte{'0'}, nonceLen)) {
			t.Errorf("NONCE %q", n)
		}
	}
}

// FuzzNonceRewrite feeds arbitrary bytes to both rewrites as a client's request and as
// pion's answer: neither panics, a request keeps its length, and a request that carries a
// nonce of ours for its 5-tuple and a MESSAGE-INTEGRITY made with a live key leaves
// verifying with that key and carrying pion's nonce.
func FuzzNonceRewrite(f *testing.F) {
	key := turn.GenerateAuthKey("alice", "avedge", "alice-pw")
	s := &Server{
		cfg:     Config{Validator: auth.NewValidator(auth.ValidatorConfig{Users: map[string]string{"alice": "alice-pw"}})},
		nonces:  newNonceSigner(nil),
		lockout: policy.NewLockout(-1, time.Minute, 1),
	}
	s.precheck.init()
	const pionPadded = "000000000000abcdefghijklmnopqrst"
	s.pionNonce.Store(&pionNonce{padded: pionPadded, at: time.Now()})
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	end := fakeEnd{local: netip.MustParseAddrPort("127.0.0.1:3478")}
	ours := s.nonces.mint(false, end.local, client)
	good := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP,
		stun.NewUsername("alice"), stun.NewRealm("avedge"), stun.NewNonce(ours), stun.MessageIntegrity(key), stun.Fingerprint)
	f.Add(good.Raw)
	f.Add(good.Raw[:len(good.Raw)-8])
	f.Add(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewNonce("abc"), stun.NewRealm("avedge")).Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = s.bindAnswerNonce(b, client, end)
		m := append([]byte(nil), b...)
		s.bindRequestNonce(m, client, sock.UDPAddr(client), end)
		if len(m) != len(b) {
			t.Fatalf("request length %d → %d", len(b), len(m))
		}
		in := &stun.Message{Raw: append([]byte(nil), b...)}
		var n stun.Nonce
		if in.Decode() != nil || n.GetFrom(in) != nil || string(n) != ours || stun.MessageIntegrity(key).Check(in) != nil ||
			!isAuthenticatedTURNRequest(b) {
			return
		}
		out := &stun.Message{Raw: m}
		if err := out.Decode(); err != nil {
			t.Fatalf("rewritten request does not decode: %v", err)
		}
		if n.GetFrom(out) != nil || string(n) != pionPadded {
			t.Fatalf("rewritten NONCE %q, want pion's", n)
		}
		if err := stun.MessageIntegrity(key).Check(out); err != nil {
			t.Fatalf("rewritten request does not verify: %v", err)
		}
	})
}

type fakeEnd struct{ local netip.AddrPort }

func (e fakeEnd) tupleEnd() (bool, netip.AddrPort) { return false, e.local }

// BenchmarkBindRequestNonce is the relay's added cost per authenticated request: check the
// nonce, look the user up, verify MESSAGE-INTEGRITY, put pion's nonce back and sign again.
func BenchmarkBindRequestNonce(b *testing.B) {
	key := turn.GenerateAuthKey("alice", "avedge", "alice-pw")
	s := &Server{
		cfg:     Config{Validator: auth.NewValidator(auth.ValidatorConfig{Users: map[string]string{"alice": "alice-pw"}})},
		nonces:  newNonceSigner(nil),
		lockout: policy.NewLockout(-1, time.Minute, 1),
	}
	s.precheck.init()
	s.pionNonce.Store(&pionNonce{padded: "000000000000abcdefghijklmnopqrst", at: time.Now()})
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	end := fakeEnd{local: netip.MustParseAddrPort("127.0.0.1:3478")}
	req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP,
		stun.NewUsername("alice"), stun.NewRealm("avedge"), stun.NewNonce(s.nonces.mint(false, end.local, client)),
		stun.MessageIntegrity(key), stun.Fingerprint).Raw
	src := sock.UDPAddr(client)
	m := make([]byte, len(req))
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for i := 0; i < b.N; i++ {
		copy(m, req)
		s.bindRequestNonce(m, client, src, end)
	}
}
