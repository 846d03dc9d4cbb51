//go:build linux

package kfast

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Packets as they arrive on a link, built and checked here independently of the program.

type pkt struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	payload        []byte
	ttl            uint8
	noCsum         bool   // IPv4 UDP checksum 0 (none)
	fragOff        uint16 // IPv4 flags+offset field
	ipOptions      bool   // IPv4 header with 4 bytes of options
	fragHdr        bool   // IPv6 fragment extension header
	lenDelta       int    // added to the UDP/IP length fields (malformed)
}

// sum16 is the ones' complement sum of b in network order.
func sum16(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

func udpCsum(src, dst netip.Addr, udp []byte) uint16 {
	var ph []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		ph = append(append(ph, s[:]...), d[:]...)
	} else {
		s, d := src.As16(), dst.As16()
		ph = append(append(ph, s[:]...), d[:]...)
	}
	ph = append(ph, 0, 17)
	ph = binary.BigEndian.AppendUint16(ph, uint16(len(udp)))
	c := ^fold(sum16(udp, sum16(ph, 0)))
	if c == 0 {
		c = 0xffff
	}
	return c
}

func (p pkt) bytes() []byte {
	b := append([]byte{}, p.dstMAC...)
	b = append(b, p.srcMAC...)
	v4 := p.src.Addr().Is4()
	udp := make([]byte, 8, 8+len(p.payload))
	binary.BigEndian.PutUint16(udp[0:], p.src.Port())
	binary.BigEndian.PutUint16(udp[2:], p.dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(p.payload)+p.lenDelta))
	udp = append(udp, p.payload...)
	if !p.noCsum || !v4 {
		binary.BigEndian.PutUint16(udp[6:], udpCsum(p.src.Addr(), p.dst.Addr(), udp))
	}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 61
	}
	if v4 {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		hl := 20
		if p.ipOptions {
			hl = 24
		}
		ip := make([]byte, hl)
		ip[0] = 0x40 | byte(hl/4)
		ip[1] = 0xb8 // DSCP EF
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(udp)+p.lenDelta))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		binary.BigEndian.PutUint16(ip[6:], p.fragOff)
		ip[8], ip[9] = ttl, 17
		s, d := p.src.Addr().As4(), p.dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		if p.ipOptions {
			ip[20] = 1 // NOP
			ip[21], ip[22], ip[23] = 1, 1, 0
		}
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip, 0)))
		return append(append(b, ip...), udp...)
	}
	b = binary.BigEndian.AppendUint16(b, 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60
	next := byte(17)
	plen := len(udp) + p.lenDelta
	if p.fragHdr {
		next = 44
		plen += 8
	}
	binary.BigEndian.PutUint16(ip[4:], uint16(plen))
	ip[6], ip[7] = next, ttl
	s, d := p.src.Addr().As16(), p.dst.Addr().As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	b = append(b, ip...)
	if p.fragHdr {
		b = append(b, 17, 0, 0, 1, 0, 0, 0, 42) // first fragment, more to come
	}
	return append(b, udp...)
}

// parse checks a packet's headers and checksums from scratch and returns what it carries.
func parse(b []byte) (p pkt, err error) {
	if len(b) < 14 {
		return p, fmt.Errorf("short frame: %d bytes", len(b))
	}
	p.dstMAC, p.srcMAC = net.HardwareAddr(b[0:6]), net.HardwareAddr(b[6:12])
	var src, dst netip.Addr
	var udp []byte
	switch binary.BigEndian.Uint16(b[12:]) {
	case 0x0800:
		ip := b[14:]
		if len(ip) < 20 || ip[0] != 0x45 {
			return p, fmt.Errorf("bad IPv4 header % x", ip[:min(len(ip), 20)])
		}
		if c := fold(sum16(ip[:20], 0)); c != 0xffff {
			return p, fmt.Errorf("IPv4 header checksum wrong (sum %#x)", c)
		}
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot != len(ip) {
			return p, fmt.Errorf("IPv4 total length %d, frame carries %d", tot, len(ip))
		}
		p.ttl = ip[8]
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = ip[20:]
	case 0x86dd:
		ip := b[14:]
		if len(ip) < 40 || ip[6] != 17 {
			return p, fmt.Errorf("bad IPv6 header")
		}
		if pl := int(binary.BigEndian.Uint16(ip[4:])); pl != len(ip)-40 {
			return p, fmt.Errorf("IPv6 payload length %d, frame carries %d", pl, len(ip)-40)
		}
		p.ttl = ip[7]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = ip[40:]
	default:
		return p, fmt.Errorf("not IP")
	}
	if len(udp) < 8 || int(binary.BigEndian.Uint16(udp[4:])) != len(udp) {
		return p, fmt.Errorf("UDP length wrong")
	}
	if c := binary.BigEndian.Uint16(udp[6:]); c == 0 {
		if !src.Is4() {
			return p, fmt.Errorf("IPv6 UDP without checksum")
		}
		p.noCsum = true
	} else {
		z := append([]byte{}, udp...)
		z[6], z[7] = 0, 0
		if want := udpCsum(src, dst, z); want != c {
			return p, fmt.Errorf("UDP checksum %#04x, want %#04x", c, want)
		}
	}
	p.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(udp[0:]))
	p.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(udp[2:]))
	p.payload = udp[8:]
	return p, nil
}

// channelData frames data on channel num, with pad bytes of padding.
func channelData(num uint16, data []byte, pad int) []byte {
	b := binary.BigEndian.AppendUint16(nil, num)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	b = append(b, data...)
	for i := range pad {
		b = append(b, byte(0xa0+i)) // padding "SHOULD" be zero; the checksum must not care
	}
	return b
}
