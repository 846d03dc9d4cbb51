//go:build linux

package relay

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
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
