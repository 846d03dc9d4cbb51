package loadgen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Payload layout. Every payload the generator sends starts with this header;
// the rest is a per-client pattern so the receiver can check the bytes that
// came back are exactly the bytes that went out.
//
//	0      4        8        16        24     25        32
//	| magic| client |  seq   | sent ns | kind | reserved | pattern ... |
const (
	payloadMagic = 0x41564c47 // "AVLG"
	offClient    = 4
	offSeq       = 8
	offTime      = 16
	offKind      = 24
	headerLen    = 32

	kindPing byte = 1 // a client's own probe, echoed back
	kindPong byte = 2 // a pair partner's echo of a ping (pair mode)
)

// MinSize and MaxSize bound the payload size: room for the header, and a
// datagram that fits a 1500-byte MTU with TURN's framing around it.
const (
	MinSize = headerLen
	MaxSize = 1400
)

// fillPayload writes the header and the pattern of client into p.
func fillPayload(p []byte, client uint32) {
	binary.BigEndian.PutUint32(p[0:], payloadMagic)
	binary.BigEndian.PutUint32(p[offClient:], client)
	clear(p[offSeq:headerLen])
	p[offKind] = kindPing
	for i := headerLen; i < len(p); i++ {
		p[i] = patternByte(client, i)
	}
}

func patternByte(client uint32, i int) byte { return byte(uint32(i)*31 + client*7 + 1) }

// stamp patches the sequence number and send time into a filled payload.
func stamp(p []byte, seq uint64, sentNS int64) {
	binary.BigEndian.PutUint64(p[offSeq:], seq)
	binary.BigEndian.PutUint64(p[offTime:], uint64(sentNS))
}

// probe is the parsed header of a payload.
type probe struct {
	client uint32
	seq    uint64
	sentNS int64
	kind   byte
}

// parsePayload reads the header of p; it does not check the pattern.
func parsePayload(p []byte) (probe, error) {
	if len(p) < headerLen {
		return probe{}, fmt.Errorf("loadgen: payload of %d bytes: %w", len(p), errShort)
	}
	if binary.BigEndian.Uint32(p) != payloadMagic {
		return probe{}, fmt.Errorf("loadgen: payload magic %#x: %w", binary.BigEndian.Uint32(p), errShort)
	}
	return probe{
		client: binary.BigEndian.Uint32(p[offClient:]),
		seq:    binary.BigEndian.Uint64(p[offSeq:]),
		sentNS: int64(binary.BigEndian.Uint64(p[offTime:])),
		kind:   p[offKind],
	}, nil
}

// RFC 8656, section 12.4:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Channel Number        |            Length             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	/                       Application Data                        /
//	/                                                               /
//	|                                                               |
//	|                               +-------------------------------+
//	|                               |
//	+-------------------------------+
//
//	The Length field specifies the length in bytes of the application
//	data field (i.e., it does not include the size of the ChannelData
//	header). [...] Over TCP and TLS-over-TCP, the ChannelData message
//	MUST be padded to a multiple of four bytes in order to ensure the
//	alignment of subsequent messages. The padding is not reflected in
//	the length field of the ChannelData message [...]. Over UDP, the
//	padding is not required but MAY be included.
//
// RFC 8656, section 12: channel numbers 0x4000 through 0x4FFF are the
// allowed values.
const (
	channelDataHeader = 4
	minChannel        = 0x4000
	maxChannel        = 0x4fff
)

// channelDataLen is the framed size of a payload of n bytes; stream
// transports pad to four.
func channelDataLen(n int, stream bool) int {
	l := channelDataHeader + n
	if stream {
		l = (l + 3) &^ 3
	}
	return l
}

// putChannelDataHeader writes the header in front of an n-byte payload that
// already sits at b[4:]. Padding, if any, is the caller's (zeroed) tail.
func putChannelDataHeader(b []byte, channel uint16, n int) {
	binary.BigEndian.PutUint16(b[0:], channel)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
}

// parseChannelData returns the channel number and the application data of a
// ChannelData message, ignoring any padding after it.
func parseChannelData(b []byte) (channel uint16, data []byte, err error) {
	if len(b) < channelDataHeader {
		return 0, nil, fmt.Errorf("loadgen: channeldata of %d bytes: %w", len(b), errShort)
	}
	channel = binary.BigEndian.Uint16(b)
	if channel < minChannel || channel > maxChannel {
		return 0, nil, fmt.Errorf("loadgen: channel number %#x out of range: %w", channel, errShort)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if len(b)-channelDataHeader < n {
		return 0, nil, fmt.Errorf("loadgen: channeldata length %d of %d: %w", n, len(b)-channelDataHeader, errShort)
	}
	return channel, b[channelDataHeader : channelDataHeader+n], nil
}

// STUN framing used on the data path (RFC 8489, section 5, and RFC 8656,
// sections 11.4 and 11.6): a 20-byte header, then TLV attributes padded to
// four bytes.
const (
	stunHeader        = 20
	stunMagicCookie   = 0x2112a442
	typeSendInd       = 0x0016 // Send indication
	typeDataInd       = 0x0017 // Data indication
	attrXORPeerAddr   = 0x0012
	attrData          = 0x0013
	xorPeerAddrIPv4   = 8 // family, port, address
	sendIndPayloadOff = stunHeader + 4 + xorPeerAddrIPv4 + 4
)

// RFC 8656, section 11.4:
//
//	When the client wishes to send data to a peer, it sends a Send
//	indication. [...] It MUST include an XOR-PEER-ADDRESS attribute and
//	a DATA attribute.
//
// buildSendIndication returns a Send indication to the IPv4 peer carrying
// payload; the payload starts at sendIndPayloadOff so senders can patch it in
// place. The transaction ID is left zero for the sender to vary.
func buildSendIndication(peer netip.AddrPort, payload []byte) ([]byte, error) {
	if !peer.Addr().Is4() {
		return nil, fmt.Errorf("loadgen: send indication to %s: only IPv4 peers", peer)
	}
	pad := (4 - len(payload)%4) % 4
	attrs := 4 + xorPeerAddrIPv4 + 4 + len(payload) + pad
	b := make([]byte, stunHeader+attrs)
	binary.BigEndian.PutUint16(b[0:], typeSendInd)
	binary.BigEndian.PutUint16(b[2:], uint16(attrs))
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	a := b[stunHeader:]
	binary.BigEndian.PutUint16(a[0:], attrXORPeerAddr)
	binary.BigEndian.PutUint16(a[2:], xorPeerAddrIPv4)
	a[4] = 0
	a[5] = 0x01 // IPv4
	binary.BigEndian.PutUint16(a[6:], peer.Port()^uint16(stunMagicCookie>>16))
	ip := peer.Addr().As4()
	binary.BigEndian.PutUint32(a[8:], binary.BigEndian.Uint32(ip[:])^stunMagicCookie)
	a = a[4+xorPeerAddrIPv4:]
	binary.BigEndian.PutUint16(a[0:], attrData)
	binary.BigEndian.PutUint16(a[2:], uint16(len(payload)))
	copy(a[4:], payload)
	return b, nil
}

// isStun reports whether b starts like a STUN message: RFC 8489 section 5,
// "The most significant 2 bits of every STUN message MUST be zeroes."
func isStun(b []byte) bool { return len(b) >= stunHeader && b[0]&0xc0 == 0 }

// parseDataIndication returns the DATA attribute of a Data indication
// without allocating.
func parseDataIndication(b []byte) ([]byte, error) {
	if len(b) < stunHeader {
		return nil, fmt.Errorf("loadgen: stun message of %d bytes: %w", len(b), errShort)
	}
	if binary.BigEndian.Uint16(b) != typeDataInd {
		return nil, errNotData
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n > len(b)-stunHeader {
		return nil, fmt.Errorf("loadgen: stun length %d of %d: %w", n, len(b)-stunHeader, errShort)
	}
	a := b[stunHeader : stunHeader+n]
	for len(a) >= 4 {
		t := binary.BigEndian.Uint16(a)
		l := int(binary.BigEndian.Uint16(a[2:]))
		if l > len(a)-4 {
			return nil, fmt.Errorf("loadgen: attribute %#x length %d of %d: %w", t, l, len(a)-4, errShort)
		}
		if t == attrData {
			return a[4 : 4+l], nil
		}
		step := 4 + (l+3)&^3
		if step > len(a) {
			break
		}
		a = a[step:]
	}
	return nil, fmt.Errorf("loadgen: data indication without DATA: %w", errShort)
}
