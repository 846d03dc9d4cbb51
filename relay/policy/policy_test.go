package policy

import (
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

func mustPrefixes(t testing.TB, entries ...string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Named configurations shared by the Check table.
func testPolicies(t testing.TB) map[string]*Policy {
	return map[string]*Policy{
		"default":  New(Config{}),
		"zero":     &Policy{},
		"loopback": New(Config{AllowLoopback: true}),
		// An operator who allows the well-known NAT64 prefix, or a
		// network-specific one, to reach IPv4-only peers through a NAT64.
		"wireserver": New(Config{Allow: mustPrefixes(t, "168.63.129.16/32")}),
		"nat64":      New(Config{Allow: mustPrefixes(t, "64:ff9b::/96", "2001:db8:64::/96")}),
		"lists": New(Config{
			Allow: mustPrefixes(t, "10.0.0.0/8", "192.168.5.0/24", "fd00:1::/32",
				"2001:db8:1::/48", "52.0.0.0/8", "2606:4700:ffff::/48", "10.1.1.1"),
			Deny: mustPrefixes(t, "10.9.0.0/16", "8.8.4.0/24", "2606:4700:ffff::/48",
				"::ffff:9.9.9.0/120"),
			// The host's own addresses: a public address, a VIP range,
			// an IPv6 address, loopback; one of them is a relayed address.
			Local: mustPrefixes(t, "52.1.2.3/32", "52.1.2.4/32", "52.7.0.0/24",
				"2600:1f18::1/128", "127.0.0.0/8", "::1/128", "10.1.1.1/32", "52.8.0.1/32"),
			Own: []netip.Addr{netip.MustParseAddr("52.1.2.4")},
		}),
		"local-loopback": New(Config{
			AllowLoopback: true,
			Local:         mustPrefixes(t, "127.0.0.0/8", "::1/128", "52.1.2.3/32"),
			Own:           []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		}),
	}
}

func TestCheck(t *testing.T) {
	policies := testPolicies(t)
	tests := []struct {
		name   string
		policy string
		addr   string
		want   Reason
	}{
		// Plain IPv4.
		{"v4 public", "default", "8.8.8.8", Allowed},
		{"v4 public zero policy", "zero", "1.1.1.1", Allowed},
		{"v4 loopback", "default", "127.0.0.1", ReasonLoopback},
		{"v4 loopback top", "default", "127.255.255.254", ReasonLoopback},
		{"v4 unspecified", "default", "0.0.0.0", ReasonUnspecified},
		{"v4 this network", "default", "0.1.2.3", ReasonUnspecified},
		{"v4 rfc1918 10", "default", "10.1.2.3", ReasonPrivate},
		{"v4 rfc1918 172.16", "default", "172.16.0.1", ReasonPrivate},
		{"v4 rfc1918 172.31 top", "default", "172.31.255.255", ReasonPrivate},
		{"v4 172.32 public", "default", "172.32.0.1", Allowed},
		{"v4 rfc1918 192.168", "zero", "192.168.1.1", ReasonPrivate},
		{"v4 cgnat", "default", "100.64.0.1", ReasonCGNAT},
		{"v4 cgnat top", "default", "100.127.255.255", ReasonCGNAT},
		{"v4 after cgnat", "default", "100.128.0.0", Allowed},
		{"v4 link-local metadata", "default", "169.254.169.254", ReasonLinkLocal},
		{"v4 multicast", "default", "224.0.0.1", ReasonMulticast},
		{"v4 multicast ssdp", "default", "239.255.255.250", ReasonMulticast},
		{"v4 broadcast", "default", "255.255.255.255", ReasonBroadcast},
		{"v4 class e", "default", "240.0.0.1", ReasonReserved},
		{"v4 class e top", "default", "255.255.255.254", ReasonReserved},
		{"v4 test-net-1", "default", "192.0.2.1", ReasonDocumentation},
		{"v4 test-net-2", "default", "198.51.100.1", ReasonDocumentation},
		{"v4 test-net-3", "default", "203.0.113.1", ReasonDocumentation},
		{"v4 benchmarking", "default", "198.18.0.1", ReasonReserved},
		{"v4 benchmarking top", "default", "198.19.255.255", ReasonReserved},
		{"v4 after benchmarking", "default", "198.20.0.0", Allowed},
		{"v4 ietf protocol assignments", "default", "192.0.0.9", ReasonReserved},
		{"v4 6to4 relay anycast", "default", "192.88.99.1", ReasonReserved},

		// Plain IPv6.
		{"v6 public", "default", "2606:4700:4700::1111", Allowed},
		{"v6 loopback", "default", "::1", ReasonLoopback},
		{"v6 unspecified", "default", "::", ReasonUnspecified},
		{"v6 link-local", "default", "fe80::1", ReasonLinkLocal},
		{"v6 link-local top", "default", "febf:ffff::1", ReasonLinkLocal},
		{"v6 site-local deprecated", "default", "fec0::1", ReasonReserved},
		{"v6 multicast link", "default", "ff02::1", ReasonMulticast},
		{"v6 multicast global", "default", "ff0e::1", ReasonMulticast},
		{"v6 ula fc", "default", "fc00::1", ReasonUniqueLocal},
		{"v6 ula fd", "default", "fd12:3456::1", ReasonUniqueLocal},
		{"v6 documentation", "default", "2001:db8::1", ReasonDocumentation},
		{"v6 documentation 3fff", "default", "3fff:abc::1", ReasonDocumentation},
		{"v6 discard-only", "default", "100::1", ReasonReserved},
		{"v6 benchmarking", "default", "2001:2::1", ReasonReserved},
		{"v6 orchid v2", "default", "2001:20::1", ReasonReserved},
		{"v6 srv6 sid", "default", "5f00::1", ReasonReserved},
		{"v6 unallocated 4000::/3", "default", "4000::1", ReasonReserved},
		{"v6 reserved ::/8", "default", "12::1", ReasonReserved},
		{"v6 zoned link-local", "default", "fe80::1%eth0", ReasonInvalid},
		{"v6 zoned public", "default", "2606:4700::1%eth0", ReasonInvalid},

		// IPv4-mapped ::ffff:a.b.c.d.
		{"mapped loopback", "default", "::ffff:127.0.0.1", ReasonLoopback},
		{"mapped unspecified", "default", "::ffff:0.0.0.0", ReasonUnspecified},
		{"mapped private", "default", "::ffff:10.0.0.1", ReasonPrivate},
		{"mapped metadata", "default", "::ffff:169.254.169.254", ReasonLinkLocal},
		{"mapped public", "default", "::ffff:8.8.8.8", Allowed},

		// IPv4-compatible ::a.b.c.d (deprecated).
		{"compat loopback", "default", "::127.0.0.1", ReasonLoopback},
		{"compat private", "default", "::10.0.0.1", ReasonPrivate},
		{"compat public still reserved", "default", "::8.8.8.8", ReasonReserved},

		// NAT64.
		{"nat64 loopback", "default", "64:ff9b::7f00:1", ReasonLoopback},
		{"nat64 metadata", "default", "64:ff9b::a9fe:a9fe", ReasonLinkLocal},
		{"nat64 private", "default", "64:ff9b::c0a8:101", ReasonPrivate},
		{"nat64 public", "default", "64:ff9b::808:808", Allowed},
		{"nat64 outside /96", "default", "64:ff9b::1:0:808:808", ReasonReserved},
		{"nat64 local-use loopback", "default", "64:ff9b:1::7f00:1", ReasonLoopback},
		{"nat64 local-use public", "default", "64:ff9b:1::808:808", ReasonReserved},

		// 6to4 2002:V4ADDR::/48.
		{"6to4 loopback", "default", "2002:7f00:1::1", ReasonLoopback},
		{"6to4 private", "default", "2002:a00:1::1", ReasonPrivate},
		{"6to4 metadata", "default", "2002:a9fe:a9fe:1::1", ReasonLinkLocal},
		{"6to4 cgnat", "default", "2002:6440:1::1", ReasonCGNAT},
		{"6to4 public", "default", "2002:808:808::1", Allowed},

		// Teredo 2001::/32: server in bits 32-63, client obfuscated in the
		// last 32 bits. RFC 4380's example: server 65.54.227.120, client
		// 192.0.2.45 behind port 40000.
		{"teredo rfc example (doc client)", "default", "2001:0:4136:e378:8000:63bf:3fff:fdd2", ReasonDocumentation},
		{"teredo public both", "default", "2001:0:808:808::fefd:fcfb", Allowed},
		{"teredo loopback server", "default", "2001:0:7f00:1::fefd:fcfb", ReasonLoopback},
		{"teredo private client", "default", "2001:0:808:808::f5ff:fffe", ReasonPrivate},
		{"teredo loopback client", "default", "2001:0:808:808::80ff:fffe", ReasonLoopback},

		// AllowLoopback: loopback in every form, nothing else.
		{"allowloopback v4", "loopback", "127.0.0.1", Allowed},
		{"allowloopback v6", "loopback", "::1", Allowed},
		{"allowloopback mapped", "loopback", "::ffff:127.0.0.1", Allowed},
		{"allowloopback nat64", "loopback", "64:ff9b::7f00:1", Allowed},
		{"allowloopback 6to4", "loopback", "2002:7f00:1::1", Allowed},
		{"allowloopback compat still reserved", "loopback", "::127.0.0.1", ReasonReserved},
		{"allowloopback unspecified v4", "loopback", "0.0.0.0", ReasonUnspecified},
		{"allowloopback unspecified v6", "loopback", "::", ReasonUnspecified},
		{"allowloopback private", "loopback", "10.0.0.1", ReasonPrivate},
		{"allowloopback metadata", "loopback", "169.254.169.254", ReasonLinkLocal},

		// Allow, Deny, Local and Own.
		{"allow lifts private", "lists", "10.1.2.3", Allowed},
		{"allow matches mapped", "lists", "::ffff:10.1.2.3", Allowed},
		{"allow matches 6to4", "lists", "2002:a01:203::1", Allowed},
		{"allow matches nat64", "lists", "64:ff9b::a01:203", Allowed},
		{"allow /24 only", "lists", "192.168.5.7", Allowed},
		{"allow /24 neighbour", "lists", "192.168.6.7", ReasonPrivate},
		{"allow ula", "lists", "fd00:1::5", Allowed},
		{"allow ula neighbour", "lists", "fd00:2::5", ReasonUniqueLocal},
		{"allow v6 as given", "lists", "2001:db8:1::1", Allowed},
		{"allow v6 neighbour", "lists", "2001:db8:2::1", ReasonDocumentation},
		{"allow does not lift loopback", "lists", "127.0.0.1", ReasonLoopback},
		{"teredo allowed client, loopback server", "lists", "2001:0:7f00:1::f5fe:fdfc", ReasonLoopback},
		{"teredo allowed client, public server", "lists", "2001:0:808:808::f5fe:fdfc", Allowed},
		{"deny wins over allow", "lists", "10.9.1.1", ReasonDenyList},
		{"deny wins over allow mapped", "lists", "::ffff:10.9.1.1", ReasonDenyList},
		{"deny public", "lists", "8.8.4.4", ReasonDenyList},
		{"deny mapped", "lists", "::ffff:8.8.4.4", ReasonDenyList},
		{"deny 6to4", "lists", "2002:808:404::1", ReasonDenyList},
		{"deny nat64", "lists", "64:ff9b::808:404", ReasonDenyList},
		{"deny teredo client", "lists", "2001:0:101:101::f7f7:fbfb", ReasonDenyList},
		{"deny v6 wins over allow", "lists", "2606:4700:ffff::1", ReasonDenyList},
		{"deny given as mapped prefix", "lists", "9.9.9.9", ReasonDenyList},
		{"deny neighbour", "lists", "8.8.8.8", Allowed},
		{"local v4", "lists", "52.1.2.3", ReasonLocal},
		{"local v4 wins over a range allow", "lists", "52.8.0.1", ReasonLocal},
		{"local mapped", "lists", "::ffff:52.1.2.3", ReasonLocal},
		{"local 6to4", "lists", "2002:3401:203::1", ReasonLocal},
		{"local nat64", "lists", "64:ff9b::3401:203", ReasonLocal},
		{"local vip range", "lists", "52.7.0.99", ReasonLocal},
		{"local neighbour allowed", "lists", "52.1.2.5", Allowed},
		{"local v6", "lists", "2600:1f18::1", ReasonLocal},
		{"local v6 neighbour", "lists", "2600:1f18::2", Allowed},
		{"own relayed address", "lists", "52.1.2.4", Allowed},
		{"own relayed address mapped", "lists", "::ffff:52.1.2.4", Allowed},
		{"local private keeps its reason", "lists", "127.0.0.1", ReasonLoopback},
		{"local lifted by a single-address allow", "lists", "10.1.1.1", Allowed},
		{"local, allow loopback", "local-loopback", "127.0.0.2", Allowed},
		{"local v6 loopback, allow loopback", "local-loopback", "::1", Allowed},
		{"local public, allow loopback", "local-loopback", "52.1.2.3", ReasonLocal},

		// An IPv6 allow entry lifts the IPv6 classification only: the IPv4
		// address it embeds is still classified (and refused) on its own.
		{"nat64 allowed, public v4", "nat64", "64:ff9b::808:808", Allowed},
		{"nat64 allowed, metadata v4", "nat64", "64:ff9b::a9fe:a9fe", ReasonLinkLocal},
		{"nat64 allowed, private v4", "nat64", "64:ff9b::a00:1", ReasonPrivate},
		{"nat64 allowed, loopback v4", "nat64", "64:ff9b::7f00:1", ReasonLoopback},
		{"nat64 allowed, wireserver v4", "nat64", "64:ff9b::a83f:8110", ReasonMetadata},
		{"network-specific prefix allowed", "nat64", "2001:db8:64::1", Allowed},

		// Cloud metadata and host services on public addresses.
		{"azure wireserver", "default", "168.63.129.16", ReasonMetadata},
		{"azure wireserver mapped", "default", "::ffff:168.63.129.16", ReasonMetadata},
		{"azure wireserver neighbour", "default", "168.63.129.17", Allowed},
		{"allow lifts wireserver", "wireserver", "168.63.129.16", Allowed},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d address forms", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := policies[tt.policy]
			if !ok {
				t.Fatalf("no policy %q", tt.policy)
			}
			ip := netip.MustParseAddr(tt.addr)
			if got := p.Check(ip); got != tt.want {
				t.Errorf("Check(%s) with %s = %q, want %q", tt.addr, tt.policy, got, tt.want)
			}
		})
	}
}

func TestCheckInvalid(t *testing.T) {
	if got := New(Config{}).Check(netip.Addr{}); got != ReasonInvalid {
		t.Errorf("Check(zero Addr) = %q, want %q", got, ReasonInvalid)
	}
}

func TestNewSkipsInvalidAndCopies(t *testing.T) {
	allow := []netip.Prefix{{}, netip.MustParsePrefix("10.1.2.3/8")}
	own := []netip.Addr{{}, netip.MustParseAddr("2600:1f18::1%eth0")}
	local := []netip.Prefix{{}, netip.MustParsePrefix("2600:1f18::/64")}
	p := New(Config{Allow: allow, Local: local, Own: own})
	allow[1] = netip.MustParsePrefix("1.0.0.0/8") // must not affect p
	if got := p.Check(netip.MustParseAddr("10.200.0.1")); got != Allowed {
		t.Errorf("unmasked allow entry: got %q, want allowed", got)
	}
	if got := p.Check(netip.MustParseAddr("2600:1f18::1")); got != Allowed {
		t.Errorf("zoned own address: got %q, want allowed", got)
	}
	if got := p.Check(netip.MustParseAddr("2600:1f18::2")); got != ReasonLocal {
		t.Errorf("local address: got %q, want %q", got, ReasonLocal)
	}
}

func TestCheckAllocs(t *testing.T) {
	p := testPolicies(t)["lists"]
	addrs := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("2606:4700:4700::1111"),
		netip.MustParseAddr("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
		netip.MustParseAddr("::ffff:10.9.1.1"),
		netip.MustParseAddr("2600:1f18::1"),
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, a := range addrs {
			_ = p.Check(a)
		}
	})
	if allocs != 0 {
		t.Errorf("Check allocates %.1f times per run, want 0", allocs)
	}
}

func TestReasons(t *testing.T) {
	label := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	seen := map[Reason]bool{}
	for _, r := range Reasons() {
		if !label.MatchString(string(r)) {
			t.Errorf("reason %q is not a snake_case label", r)
		}
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
	if len(seen) != 14 {
		t.Errorf("Reasons() has %d entries, want 14", len(seen))
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{
		"10.0.0.0/8", " 2001:db8::/32 ", "1.2.3.4", "::1",
		"10.1.2.3/8", "::ffff:10.0.0.0/104", "::ffff:1.2.3.4", "::ffff:0:0/95",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.0.0.0/8", "2001:db8::/32", "1.2.3.4/32", "::1/128",
		"10.0.0.0/8", "10.0.0.0/8", "1.2.3.4/32", "::fffe:0:0/95",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d prefixes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("entry %d: got %s, want %s", i, got[i], want[i])
		}
	}
}

func TestParsePrefixesErrors(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		index   string
	}{
		{"empty", []string{"10.0.0.0/8", ""}, "entry 1 "},
		{"bits too long v4", []string{"10.0.0.0/33"}, "entry 0 "},
		{"bits too long v6", []string{"::/0", "1.1.1.1", "2001:db8::/129"}, "entry 2 "},
		{"hostname", []string{"relay.example.com"}, "entry 0 "},
		{"zone", []string{"fe80::1%eth0"}, "entry 0 "},
		{"zone in prefix", []string{"fe80::%eth0/64"}, "entry 0 "},
		{"missing bits", []string{"1.2.3.4/"}, "entry 0 "},
		{"double slash", []string{"8.8.8.8", "10.0.0.0/8/8"}, "entry 1 "},
		{"leading zero octet", []string{"010.0.0.1"}, "entry 0 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePrefixes(tt.entries)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidPrefix) {
				t.Errorf("error %v does not wrap ErrInvalidPrefix", err)
			}
			msg := err.Error()
			bad := tt.entries[len(tt.entries)-1]
			if !strings.Contains(msg, tt.index) || !strings.Contains(msg, bad) {
				t.Errorf("error %q does not name %q at %q", msg, bad, tt.index)
			}
			if !strings.HasPrefix(msg, "policy: ") {
				t.Errorf("error %q lacks the package prefix", msg)
			}
		})
	}
}
