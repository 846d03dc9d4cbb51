//go:build linux

package relay

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// workerBindingAnswers sums the Binding requests the workers answered themselves.
func (s *Server) workerBindingAnswers() (n uint64) {
	for _, w := range s.workers {
		n += w.Stats().BindingAnswers()
	}
	return n
}

// The workers answer a plain Binding request themselves with the very bytes pion writes for
// it (same class, transaction ID, XOR-MAPPED-ADDRESS and FINGERPRINT); a Binding request
// with MESSAGE-INTEGRITY still goes to pion. The same request, from the same client socket,
// goes to avedge and to a plain pion server, and the answers are compared byte for byte.
func TestBindingAnswerIsPions(t *testing.T) {
	forEachDataPath(t, func(t *testing.T, path DataPath) {
		s := startServerOn(t, path, nil)
		pionAddr, _ := startPlainPion(t, nil)
		avedge, err := net.ResolveUDPAddr("udp4", s.addrOf(UDP))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := net.ResolveUDPAddr("udp4", pionAddr)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ask := func(to *net.UDPAddr, req []byte) []byte {
			t.Helper()
			if _, err := conn.WriteToUDP(req, to); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2048)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("no answer from %v: %v", to, err)
			}
			if from.String() != to.String() {
				t.Fatalf("answer from %v, want %v", from, to)
			}
			return buf[:n]
		}
		for _, tc := range []struct {
			name   string
			worker bool // answered by the workers
			setter []stun.Setter
		}{
			{"plain", true, nil},
			{"SOFTWARE and FINGERPRINT", true, []stun.Setter{stun.NewSoftware("test"), stun.Fingerprint}},
			{"FINGERPRINT", true, []stun.Setter{stun.Fingerprint}},
			{"MESSAGE-INTEGRITY", false, []stun.Setter{stun.NewShortTermIntegrity("pw"), stun.Fingerprint}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, tc.setter...)...)
				if err != nil {
					t.Fatal(err)
				}
				before := s.workerBindingAnswers()
				got := ask(avedge, req.Raw)
				want := ask(plain, req.Raw)
				if !bytes.Equal(got, want) {
					t.Fatalf("avedge answered\n% x\npion answers\n% x", got, want)
				}
				m := &stun.Message{Raw: got}
				var xa stun.XORMappedAddress
				if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess || m.TransactionID != req.TransactionID ||
					xa.GetFrom(m) != nil || stun.Fingerprint.Check(m) != nil {
					t.Fatalf("answer %v does not decode as the Binding success to the request (%v)", m, err)
				}
				if xa.String() != conn.LocalAddr().String() {
					t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", xa, conn.LocalAddr())
				}
				if d := s.workerBindingAnswers() - before; (d == 1) != tc.worker {
					t.Fatalf("workers answered %d; want answered by the workers: %v", d, tc.worker)
				}
			})
		}
		if got := s.Stats().BindingRequests; got != 4 {
			t.Fatalf("Binding requests counted: %d, want 4", got)
		}
	})
}
