//go:build linux

package relay

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/metrics"
)

// sendBuilt writes n messages from conn to server at once, each built by build with its own
// transaction id, and returns how many were answered within the quiet period (the read
// deadline is pushed back by each answer, so the wait is bounded by n answers plus one quiet
// period).
func sendBuilt(t *testing.T, conn *net.UDPConn, server *net.UDPAddr, n int, build func() []stun.Setter) int {
	t.Helper()
	ids := map[[stun.TransactionIDSize]byte]bool{}
	for i := 0; i < n; i++ {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, build()...)...)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.TransactionID] = true
		if _, err := conn.WriteToUDP(m.Raw, server); err != nil {
			t.Fatal(err)
		}
	}
	answered := 0
	buf := make([]byte, 2048)
	for answered < n {
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		k, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:k]...)}
		if m.Decode() == nil && ids[m.TransactionID] {
			delete(ids, m.TransactionID)
			answered++
		}
	}
	return answered
}

// Every answer a spoofed source can draw is limited per source address, not only 401: a 438
// (any request with MESSAGE-INTEGRITY and a NONCE that is not the client's), a 400, and a
// Binding success. Over the rate (burst: 5 seconds' worth plus one) answers are dropped and
// counted; another source has its own budget.
func TestAnswerRateLimits(t *testing.T) {
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	integrity := stun.NewLongTermIntegrity("someone", "avedge", "anything")
	for _, tc := range []struct {
		name  string
		limit func(c *Config)
		build func() []stun.Setter
		want  stun.ErrorCode // 0: a success
	}{
		{
			name:  "438 answers",
			limit: func(c *Config) { c.ErrorRate = 1 },
			build: func() []stun.Setter {
				return []stun.Setter{allocate, requestedTransportUDP, stun.NewUsername("someone"), stun.NewRealm("avedge"),
					stun.NewNonce(strings.Repeat("x", nonceLen)), integrity, stun.Fingerprint}
			},
			want: stun.CodeStaleNonce,
		},
		{
			name:  "400 answers",
			limit: func(c *Config) { c.ErrorRate = 1 },
			build: func() []stun.Setter { // MESSAGE-INTEGRITY without NONCE (RFC 8489 §9.2.4)
				return []stun.Setter{allocate, requestedTransportUDP, stun.NewUsername("someone"), stun.NewRealm("avedge"), integrity}
			},
			want: stun.CodeBadRequest,
		},
		{
			name:  "Binding answers",
			limit: func(c *Config) { c.BindingRate = 1 },
			build: func() []stun.Setter { return []stun.Setter{stun.BindingRequest, stun.Fingerprint} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.limit)
			c := dialRaw(t, s.addrOf(UDP), "", "")
			// The answer is the one expected.
			_, err := c.transact(tc.build()...)
			if got := errorCode(err); got != tc.want || (tc.want == 0 && err != nil) {
				t.Fatalf("answer: %v (code %d), want code %d", err, got, tc.want)
			}
			const n, burst = 16, 6 // burst: int(1*5)+1 tokens, one spent above
			answered := sendBuilt(t, c.conn, c.server, n, tc.build)
			// At 1 token per second, at most one more token refills while this runs.
			if answered < burst-1 || answered > burst {
				t.Fatalf("%d of %d rapid requests answered, want the rest of the burst, %d", answered, n, burst-1)
			}
			pollUntil(t, "rate_limited drops", func() bool {
				return s.Stats().Drops[metrics.DropRateLimited] == uint64(n-answered)
			})
			other := newUDPPeer(t, "127.0.0.2:0")
			if got := sendBuilt(t, other.conn, c.server, 2, tc.build); got != 2 {
				t.Fatalf("another source got %d of 2 answers", got)
			}
		})
	}
}

// The 401 that challenges an unsigned request (every TURN client's first Allocate draws one)
// is not limited per source: the clients behind one NAT share an address, and limiting their
// challenges capped their allocations at the 401 rate (~100/s with the defaults). A 401 to
// a signed request — a wrong password, an unknown user — stays limited: that is the
// password-guessing rate.
func TestChallengesNotLimited(t *testing.T) {
	s := startServer(t, func(c *Config) { c.UnauthorizedRate = 1 })
	c := dialRaw(t, s.addrOf(UDP), "", "")
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	unsigned := func() []stun.Setter { return []stun.Setter{allocate, requestedTransportUDP, stun.Fingerprint} }

	const n, burst = 16, 6 // burst: int(1*5)+1 tokens
	if got := sendBuilt(t, c.conn, c.server, n, unsigned); got != n {
		t.Fatalf("%d of %d unsigned Allocates were challenged, want all", got, n)
	}

	// A nonce of this client's, then signed requests with a password that does not verify.
	_, err := c.transact(unsigned()...)
	var se *stunError
	if !errors.As(err, &se) || se.code != stun.CodeUnauthorized {
		t.Fatalf("challenge: %v, want 401", err)
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if realm.GetFrom(se.msg) != nil || nonce.GetFrom(se.msg) != nil {
		t.Fatal("challenge without REALM or NONCE")
	}
	integrity := stun.NewLongTermIntegrity("someone", realm.String(), "wrong")
	signed := func() []stun.Setter {
		return []stun.Setter{allocate, requestedTransportUDP, stun.NewUsername("someone"), realm, nonce, integrity, stun.Fingerprint}
	}
	answered := sendBuilt(t, c.conn, c.server, n, signed)
	if answered > burst {
		t.Fatalf("%d of %d signed requests with a wrong password were answered, want at most the burst, %d", answered, n, burst)
	}
	pollUntil(t, "rate_limited drops", func() bool {
		return s.Stats().Drops[metrics.DropRateLimited] == uint64(n-answered)
	})
}
