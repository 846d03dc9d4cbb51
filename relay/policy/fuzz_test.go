package policy

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

func validReason(r Reason) bool {
	if r == Allowed {
		return true
	}
	for _, known := range Reasons() {
		if r == known {
			return true
		}
	}
	return false
}

// embeddings returns the IPv6 forms that carry v4 (filler supplies the bits
// each form leaves free), keyed by form. In "exact" forms the IPv6 address is
// worth exactly its IPv4 address; the others may be refused for more.
func embeddings(v4 [4]byte, filler [16]byte) (exact, other map[string]netip.Addr) {
	v := binary.BigEndian.Uint32(v4[:])
	mk := func(b [16]byte) netip.Addr { return netip.AddrFrom16(b) }

	var mapped, nat64, sixto4, compat, local, tserver, tclient [16]byte
	mapped[10], mapped[11] = 0xff, 0xff
	copy(mapped[12:], v4[:])

	copy(nat64[:], []byte{0, 0x64, 0xff, 0x9b})
	copy(nat64[12:], v4[:])

	sixto4 = filler
	sixto4[0], sixto4[1] = 0x20, 0x02
	copy(sixto4[2:6], v4[:])

	copy(compat[12:], v4[:])

	local = filler
	copy(local[:6], []byte{0, 0x64, 0xff, 0x9b, 0, 1})
	copy(local[12:], v4[:])

	// Teredo with a public server (8.8.8.8) and v4 as the client, and with
	// v4 as the server and a public client (1.2.3.4).
	tclient = filler
	copy(tclient[:8], []byte{0x20, 0x01, 0, 0, 8, 8, 8, 8})
	binary.BigEndian.PutUint32(tclient[12:], ^v)
	tserver = filler
	copy(tserver[:4], []byte{0x20, 0x01, 0, 0})
	copy(tserver[4:8], v4[:])
	binary.BigEndian.PutUint32(tserver[12:], ^uint32(0x01020304))

	exact = map[string]netip.Addr{"mapped": mk(mapped), "nat64": mk(nat64), "6to4": mk(sixto4)}
	other = map[string]netip.Addr{
		"nat64-local": mk(local), "teredo-client": mk(tclient), "teredo-server": mk(tserver),
	}
	if v > 1 { // ::0.0.0.0 and ::0.0.0.1 are :: and ::1, not IPv4-compatible
		other["compat"] = mk(compat)
	}
	return exact, other
}

// FuzzCheck feeds Check arbitrary 16-byte (or 4-byte) addresses: it never
// panics, always answers a known reason, and every IPv6 form embedding a
// refused IPv4 address is refused.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1})
	f.Add([]byte{169, 254, 169, 254})
	f.Add([]byte{8, 8, 8, 8})
	f.Add(netip.MustParseAddr("2001:0:4136:e378:8000:63bf:3fff:fdd2").AsSlice())
	f.Add(netip.MustParseAddr("2002:7f00:1::1").AsSlice())
	f.Add(netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())

	policies := []*Policy{New(Config{}), New(Config{AllowLoopback: true})}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ip netip.Addr
		var v4 [4]byte
		var filler [16]byte
		switch {
		case len(data) >= 16:
			copy(filler[:], data)
			ip = netip.AddrFrom16(filler)
			copy(v4[:], data[12:16])
		case len(data) >= 4:
			copy(v4[:], data)
			ip = netip.AddrFrom4(v4)
		default:
			return
		}
		for _, p := range policies {
			if r := p.Check(ip); !validReason(r) {
				t.Fatalf("Check(%s) = unknown reason %q", ip, r)
			}
			want := p.Check(netip.AddrFrom4(v4))
			exact, other := embeddings(v4, filler)
			for form, a := range exact {
				if got := p.Check(a); got != want {
					t.Errorf("%s form %s of %s: got %q, want %q", form, a, netip.AddrFrom4(v4), got, want)
				}
			}
			if want == Allowed {
				continue
			}
			for form, a := range other {
				if got := p.Check(a); got == Allowed {
					t.Errorf("%s form %s of refused %s (%q) is allowed", form, a, netip.AddrFrom4(v4), want)
				}
			}
		}
	})
}

// FuzzParsePrefixes parses arbitrary comma-separated lists: it never panics,
// and whatever it accepts is valid, masked, and usable by New.
func FuzzParsePrefixes(f *testing.F) {
	f.Add("10.0.0.0/8,2001:db8::/32")
	f.Add("1.2.3.4, ::ffff:10.0.0.0/104")
	f.Add("fe80::1%eth0")
	f.Add("10.0.0.0/33")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParsePrefixes(strings.Split(s, ","))
		if err != nil {
			return
		}
		for i, p := range got {
			if !p.IsValid() || p != p.Masked() {
				t.Errorf("entry %d: %v is not a valid masked prefix", i, p)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				t.Errorf("entry %d: %v left IPv4-mapped", i, p)
			}
		}
		_ = New(Config{Allow: got, Deny: got}).Check(netip.MustParseAddr("8.8.8.8"))
	})
}
