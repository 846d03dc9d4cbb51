package loadgen

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

func TestChannelData(t *testing.T) {
	tests := []struct {
		name    string
		payload int
		stream  bool
		wantLen int
	}{
		{"udp aligned", 160, false, 164},
		{"udp unaligned", 161, false, 165},
		{"tcp unaligned pads", 161, true, 168},
		{"tcp aligned", 160, true, 164},
		{"empty", 0, false, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := make([]byte, channelDataLen(tt.payload, tt.stream))
			if len(b) != tt.wantLen {
				t.Fatalf("framed length %d, want %d", len(b), tt.wantLen)
			}
			for i := range tt.payload {
				b[channelDataHeader+i] = byte(i)
			}
			putChannelDataHeader(b, 0x4001, tt.payload)
			ch, data, err := parseChannelData(b)
			if err != nil {
				t.Fatal(err)
			}
			if ch != 0x4001 || len(data) != tt.payload || !bytes.Equal(data, b[4:4+tt.payload]) {
				t.Errorf("parsed channel %#x, %d bytes", ch, len(data))
			}
		})
	}
}

func TestParseChannelDataRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"short header", []byte{0x40, 0x00, 0x00}},
		{"channel below range", []byte{0x3f, 0xff, 0x00, 0x00}},
		{"channel above range", []byte{0x50, 0x00, 0x00, 0x00}},
		{"length beyond datagram", []byte{0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := parseChannelData(tt.in); !errors.Is(err, errShort) {
				t.Errorf("err = %v, want errShort", err)
			}
		})
	}
}

// The Send indication we hand-build must be what pion/stun would build.
func TestSendIndicationDecodes(t *testing.T) {
	peer := netip.MustParseAddrPort("127.0.0.1:40123")
	for _, size := range []int{32, 33, 160, 1203} {
		payload := bytes.Repeat([]byte{0xab}, size)
		b, err := buildSendIndication(peer, payload)
		if err != nil {
			t.Fatal(err)
		}
		m := &stun.Message{Raw: b}
		if err := m.Decode(); err != nil {
			t.Fatalf("size %d: pion cannot decode: %v", size, err)
		}
		if m.Type != stun.NewType(stun.MethodSend, stun.ClassIndication) {
			t.Errorf("size %d: type %v", size, m.Type)
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil || !xa.IP.Equal(net.IPv4(127, 0, 0, 1)) || xa.Port != 40123 {
			t.Errorf("size %d: peer %v (%v)", size, xa, err)
		}
		data, err := m.Get(stun.AttrData)
		if err != nil || !bytes.Equal(data, payload) {
			t.Errorf("size %d: DATA mismatch (%v)", size, err)
		}
		if !bytes.Equal(b[sendIndPayloadOff:sendIndPayloadOff+size], payload) {
			t.Errorf("size %d: payload not at sendIndPayloadOff", size)
		}
	}
	if _, err := buildSendIndication(netip.MustParseAddrPort("[::1]:1"), nil); err == nil {
		t.Error("IPv6 peer accepted")
	}
}

func dataIndication(t testing.TB, attrs ...stun.Setter) []byte {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication)}, attrs...)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestParseDataIndication(t *testing.T) {
	payload := []byte("seven b")
	peer := peerAttr(netip.MustParseAddrPort("127.0.0.1:5000"))
	good := dataIndication(t, peer, stun.RawAttribute{Type: stun.AttrData, Value: payload})
	response, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"data after peer address", good, payload, nil},
		{"software before data", dataIndication(t, stun.NewSoftware("x"), stun.RawAttribute{Type: stun.AttrData, Value: payload}), payload, nil},
		{"not a data indication", response.Raw, nil, errNotData},
		{"no DATA", dataIndication(t, peer), nil, errShort},
		{"truncated", good[:len(good)-2], nil, errShort},
		{"header only", good[:stunHeader-1], nil, errShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDataIndication(tt.in)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("data %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPayload(t *testing.T) {
	p := make([]byte, 64)
	fillPayload(p, 7)
	stamp(p, 42, 123456789)
	pr, err := parsePayload(p)
	if err != nil {
		t.Fatal(err)
	}
	if pr != (probe{client: 7, seq: 42, sentNS: 123456789, kind: kindPing}) {
		t.Errorf("parsed %+v", pr)
	}
	q := make([]byte, 64)
	fillPayload(q, 8)
	if bytes.Equal(p[headerLen:], q[headerLen:]) {
		t.Error("two clients share a pattern")
	}
	if _, err := parsePayload(p[:headerLen-1]); !errors.Is(err, errShort) {
		t.Errorf("short payload: %v", err)
	}
	p[0] ^= 0xff
	if _, err := parsePayload(p); err == nil {
		t.Error("bad magic accepted")
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{"plain", "1234 (turnserver) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0", 325, false},
		{"command with spaces and parens", "99 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0", 10, false},
		{"no command", "99 a R 1", 0, true},
		{"too few fields", "99 (x) R 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatCPU = %d, %v; want %d, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzParseChannelData(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0x00, 0x02, 'h', 'i', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, data, err := parseChannelData(b)
		if err != nil {
			return
		}
		if ch < minChannel || ch > maxChannel || len(data)+channelDataHeader > len(b) {
			t.Fatalf("accepted channel %#x with %d of %d bytes", ch, len(data), len(b))
		}
		out := make([]byte, channelDataLen(len(data), false))
		putChannelDataHeader(out, ch, len(data))
		copy(out[channelDataHeader:], data)
		if !bytes.Equal(out, b[:len(out)]) {
			t.Fatalf("re-encoding differs: %x vs %x", out, b[:len(out)])
		}
	})
}

func FuzzParseDataIndication(f *testing.F) {
	f.Add(dataIndication(f, peerAttr(netip.MustParseAddrPort("127.0.0.1:5000")), stun.RawAttribute{Type: stun.AttrData, Value: []byte("payload")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		data, err := parseDataIndication(b)
		if err != nil {
			return
		}
		// Whatever we accept, pion must find the same DATA.
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() != nil {
			return // we are laxer than pion about the header; DATA was still in bounds
		}
		if got, err := m.Get(stun.AttrData); err == nil && !bytes.Equal(got, data) {
			t.Fatalf("DATA %x, pion says %x", data, got)
		}
	})
}

func FuzzParsePayload(f *testing.F) {
	p := make([]byte, 48)
	fillPayload(p, 3)
	stamp(p, 9, 1000)
	f.Add(p)
	f.Fuzz(func(t *testing.T, b []byte) {
		pr, err := parsePayload(b)
		if err != nil {
			return
		}
		q := bytes.Clone(b)
		stamp(q, pr.seq, pr.sentNS)
		if !bytes.Equal(q, b) {
			t.Fatal("stamp of the parsed header changes the payload")
		}
	})
}
