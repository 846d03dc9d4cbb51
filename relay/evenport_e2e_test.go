//go:build linux

package relay

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
)

// RFC 8656 §7.2: with EVEN-PORT (R bit set) the relayed port is even and the next port is
// reserved under a RESERVATION-TOKEN, which a second Allocate redeems for exactly that port
// (RTP/RTCP pairs). The range is small so that a port handed out twice would show.
func TestEvenPortReservation(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MinPort, c.MaxPort = 19900, 19907 })
	username, password := auth.MintREST(testSecret, "alice", time.Now().Add(time.Hour))
	rtp := dialRaw(t, s.addrOf(UDP), username, password)
	evenPortR := stun.RawAttribute{Type: stun.AttrEvenPort, Value: []byte{0x80}}
	if err := rtp.allocate(evenPortR); err != nil {
		t.Fatalf("allocate with EVEN-PORT: %v", err)
	}
	port := rtp.relayed.Port()
	if port%2 != 0 || port < 19900 || port > 19907 {
		t.Fatalf("relayed port %d: want an even port of 19900-19907", port)
	}
	token := rtp.lastToken(t)
	if st := s.Stats().Ports; st.Held != 1 || st.Reserved != 1 {
		t.Fatalf("ports held %d reserved %d, want 1 and 1", st.Held, st.Reserved)
	}

	rtcp := dialRaw(t, s.addrOf(UDP), username, password)
	if err := rtcp.allocate(stun.RawAttribute{Type: stun.AttrReservationToken, Value: token}); err != nil {
		t.Fatalf("allocate with the RESERVATION-TOKEN: %v", err)
	}
	if got := rtcp.relayed.Port(); got != port+1 {
		t.Fatalf("reserved allocation got port %d, want %d", got, port+1)
	}
	if st := s.Stats().Ports; st.Held != 2 || st.Reserved != 0 {
		t.Fatalf("ports held %d reserved %d, want 2 and 0", st.Held, st.Reserved)
	}
	// Other allocations never land on the pair.
	for i := 0; i < 4; i++ {
		c := dialRaw(t, s.addrOf(UDP), username, password)
		if err := c.allocate(); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if p := c.relayed.Port(); p == port || p == port+1 {
			t.Fatalf("port %d handed out again", p)
		}
	}
}

// lastToken returns the RESERVATION-TOKEN of the client's Allocate response.
func (c *rawClient) lastToken(t *testing.T) []byte {
	t.Helper()
	v, err := c.allocResp.Get(stun.AttrReservationToken)
	if err != nil || len(v) != 8 {
		t.Fatalf("Allocate response without an 8-byte RESERVATION-TOKEN: %v", err)
	}
	return v
}
