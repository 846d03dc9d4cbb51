package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/avedge/avedge/metrics"
)

// The PROXY protocol (HAProxy's "The PROXY protocol, Versions 1 & 2", 2020/03/05) lets an
// L4 load balancer in front of a stream listener tell the relay who its client is: the
// balancer opens its own connection to the relay and writes, before any byte of the client's,
// one header naming the client's address and port. A stream listener with
// ListenerConfig.ProxyProtocol reads it (framedConn.start) before the TLS handshake, and the
// client address it names is the one the caps, rate limits, nonces, the peer policy, logs and
// pion see.
//
// The parser is strict: version 1 (text) and version 2 (binary) only at the very start of the
// connection; no byte of the header is read beyond what it announces, and the bytes read past
// it are handed back to the connection; a header longer than maxProxyHeader is refused.

// proxyV2Sig is the 12-byte signature that starts a version 2 header (§2.2).
const proxyV2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// proxyV1Prefix starts a version 1 header (§2.1).
const proxyV1Prefix = "PROXY "

// proxyV1Max is the longest version 1 header, CRLF included (§2.1: "a receiver may reject
// an incomplete line which does not contain the CRLF sequence in the first 107 characters").
const proxyV1Max = 107

// proxyV2MaxLen bounds the address-and-TLV block of a version 2 header. The addresses take 36
// bytes at most; load balancers add TLVs (AWS's VPC endpoint id, HAProxy's SSL and unique id
// ones) of a few hundred bytes. §2.2 allows 65535: the relay refuses more than this rather
// than buffer it for every connection.
const proxyV2MaxLen = 2048

// maxProxyHeader is the longest header the relay reads.
const maxProxyHeader = 16 + proxyV2MaxLen

// proxyHeader is what a PROXY header says.
type proxyHeader struct {
	// local: the header names no client (v2 LOCAL, as health checks send; v1 UNKNOWN; v2
	// PROXY over AF_UNSPEC or AF_UNIX): §2.2 "the receiver must ... use the real connection
	// endpoints".
	local    bool
	src, dst netip.AddrPort // when not local; addresses unmapped
}

// Errors of parseProxyHeader. errProxyShort is not a refusal: more bytes are needed.
var (
	errProxyShort   = errors.New("relay: proxy header incomplete")
	errProxyMissing = errors.New("relay: no PROXY protocol header")
	errProxyBad     = errors.New("relay: malformed PROXY protocol header")
)

// parseProxyHeader parses the header at the start of b. It returns the header and its length
// in bytes; errProxyShort when b is a strict prefix of a header that may still be valid;
// errProxyMissing when b starts with neither signature (a client speaking to the listener
// directly); an error wrapping errProxyBad otherwise. It never reads past the header.
func parseProxyHeader(b []byte) (proxyHeader, int, error) {
	switch {
	case hasPrefixOf(b, proxyV2Sig):
		if len(b) < len(proxyV2Sig) {
			return proxyHeader{}, 0, errProxyShort
		}
		return parseProxyV2(b)
	case hasPrefixOf(b, proxyV1Prefix):
		if len(b) < len(proxyV1Prefix) {
			return proxyHeader{}, 0, errProxyShort
		}
		return parseProxyV1(b)
	}
	return proxyHeader{}, 0, errProxyMissing
}

// hasPrefixOf reports whether b and sig agree on their common length (b empty: true).
func hasPrefixOf(b []byte, sig string) bool {
	n := min(len(b), len(sig))
	return string(b[:n]) == sig[:n]
}

func proxyBad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProxyBad, fmt.Sprintf(format, args...))
}

// parseProxyV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN ...\r\n".
func parseProxyV1(b []byte) (proxyHeader, int, error) {
	lf := bytes.IndexByte(b[:min(len(b), proxyV1Max)], '\n')
	switch {
	case lf < 0 && len(b) >= proxyV1Max:
		return proxyHeader{}, 0, proxyBad("v1: no CRLF in the first %d bytes", proxyV1Max)
	case lf < 0:
		return proxyHeader{}, 0, errProxyShort
	case b[lf-1] != '\r':
		return proxyHeader{}, 0, proxyBad("v1: LF without CR")
	}
	end := lf - 1
	line := string(b[len(proxyV1Prefix):end])
	n := end + 2
	// §2.1: "PROXY UNKNOWN" — "the receiver must ignore anything presented before the CRLF".
	if line == "UNKNOWN" || strings.HasPrefix(line, "UNKNOWN ") {
		return proxyHeader{local: true}, n, nil
	}
	f := splitSpaces(line)
	if len(f) != 5 {
		return proxyHeader{}, 0, proxyBad("v1: want 5 fields after PROXY, got %d", len(f))
	}
	var want6 bool
	switch f[0] {
	case "TCP4":
	case "TCP6":
		want6 = true
	default:
		return proxyHeader{}, 0, proxyBad("v1: protocol %q is not TCP4, TCP6 or UNKNOWN", f[0])
	}
	var addrs [2]netip.Addr
	for i, s := range f[1:3] {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || a.Is6() != want6 {
			return proxyHeader{}, 0, proxyBad("v1: %q is not an address of %s", s, f[0])
		}
		addrs[i] = a.Unmap()
	}
	var ports [2]uint16
	for i, s := range f[3:5] {
		p, err := parsePort(s)
		if err != nil {
			return proxyHeader{}, 0, proxyBad("v1: port %q: %v", s, err)
		}
		ports[i] = p
	}
	return proxyHeader{src: netip.AddrPortFrom(addrs[0], ports[0]), dst: netip.AddrPortFrom(addrs[1], ports[1])}, n, nil
}

// splitSpaces splits s on single spaces; an empty field (two spaces, a leading or trailing
// one) comes back empty, which no field accepts.
func splitSpaces(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
		if len(out) > 6 {
			return out
		}
	}
}

// parsePort reads a decimal port: digits only, 0 to 65535.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 {
		return 0, errors.New("not 1 to 5 digits")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal number")
		}
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, errors.New("above 65535")
	}
	return uint16(p), nil
}

// parseProxyV2 parses a version 2 header: the signature, version and command, family and
// protocol, the length of what follows, the addresses and TLVs (skipped).
func parseProxyV2(b []byte) (proxyHeader, int, error) {
	if len(b) < 16 {
		if len(b) > 12 && b[12]>>4 != 2 {
			return proxyHeader{}, 0, proxyBad("v2: version %d", b[12]>>4)
		}
		return proxyHeader{}, 0, errProxyShort
	}
	verCmd, famProto, size := b[12], b[13], int(binary.BigEndian.Uint16(b[14:16]))
	if verCmd>>4 != 2 {
		return proxyHeader{}, 0, proxyBad("v2: version %d", verCmd>>4)
	}
	cmd := verCmd & 0x0F
	if cmd > 1 {
		return proxyHeader{}, 0, proxyBad("v2: command %d is neither LOCAL nor PROXY", cmd)
	}
	if size > proxyV2MaxLen {
		return proxyHeader{}, 0, proxyBad("v2: %d bytes of addresses and TLVs, more than the %d the relay reads", size, proxyV2MaxLen)
	}
	fam, proto := famProto>>4, famProto&0x0F
	if fam > 3 || proto > 2 {
		return proxyHeader{}, 0, proxyBad("v2: family %d, protocol %d", fam, proto)
	}
	var need int
	switch fam {
	case 1: // AF_INET
		need = 12
	case 2: // AF_INET6
		need = 36
	case 3: // AF_UNIX
		need = 216
	}
	if size < need {
		return proxyHeader{}, 0, proxyBad("v2: %d bytes of addresses, family %d needs %d", size, fam, need)
	}
	n := 16 + size
	if len(b) < n {
		return proxyHeader{}, 0, errProxyShort
	}
	// §2.2: "the receiver must accept this connection as valid and must use the real
	// connection endpoints and discard the protocol block including the family which is
	// ignored" (LOCAL); for AF_UNSPEC and AF_UNIX, the receiver may use the real endpoints too.
	if cmd == 0 || fam == 0 || fam == 3 {
		return proxyHeader{local: true}, n, nil
	}
	if proto != 1 {
		return proxyHeader{}, 0, proxyBad("v2: protocol %d on a stream listener (want STREAM)", proto)
	}
	body := b[16:n]
	var src, dst netip.Addr
	var ports []byte
	if fam == 1 {
		src, dst = netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8]))
		ports = body[8:12]
	} else {
		src, dst = netip.AddrFrom16([16]byte(body[0:16])).Unmap(), netip.AddrFrom16([16]byte(body[16:32])).Unmap()
		ports = body[32:36]
	}
	return proxyHeader{
		src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports[0:2])),
		dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:4])),
	}, n, nil
}

// readProxyHeader reads the header that starts r (within whatever deadline the caller set).
// It returns the header and the bytes read past it (the client's first bytes, to be read
// before the rest of r). It reads at most maxProxyHeader bytes before deciding.
func readProxyHeader(r io.Reader) (proxyHeader, []byte, error) {
	var buf [maxProxyHeader]byte
	n := 0
	for {
		m, err := r.Read(buf[n:])
		n += m
		h, size, perr := parseProxyHeader(buf[:n])
		switch {
		case perr == nil:
			return h, bytes.Clone(buf[size:n]), nil
		case !errors.Is(perr, errProxyShort):
			return proxyHeader{}, nil, perr
		case err != nil:
			if n == 0 && errors.Is(err, io.EOF) {
				return proxyHeader{}, nil, fmt.Errorf("%w: the connection ended before any byte", errProxyMissing)
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return proxyHeader{}, nil, fmt.Errorf("relay: reading the PROXY protocol header: %w", err)
		case n == len(buf):
			return proxyHeader{}, nil, proxyBad("longer than %d bytes", maxProxyHeader)
		}
	}
}

// proxyRefusalOf names, for the metrics, why readProxyHeader refused a connection with err.
func proxyRefusalOf(err error) metrics.ProxyRefusal {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return metrics.ProxyTimeout
	case errors.Is(err, errProxyMissing):
		return metrics.ProxyNoHeader
	}
	return metrics.ProxyInvalidHeader // malformed, too long, or cut short by the connection's end
}

// proxiedConn is a stream connection whose PROXY header has been read: Read returns first
// the bytes read past the header, and RemoteAddr the client the header named.
type proxiedConn struct {
	net.Conn          // the connection from the load balancer. Static.
	remote   net.Addr // the client (the balancer when the header named none). Set by framedConn.start before the first Read.
	rest     []byte   // read past the header, not yet returned. Owned by the reader.
}

func (c *proxiedConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *proxiedConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}
