//go:build linux

package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/relay"

	"github.com/avedge/avedge/internal/testcert"
)

func TestClassify(t *testing.T) {
	turnErr := func(code stun.ErrorCode) error {
		return fmt.Errorf("allocate: %w", &stun.TurnError{ErrorCodeAttr: stun.ErrorCodeAttribute{Code: code}})
	}
	tests := []struct {
		name string
		err  error
		want Reason
		code int
	}{
		{"401", turnErr(stun.CodeUnauthorized), ReasonAuth, 401},
		{"486 quota", turnErr(stun.CodeAllocQuotaReached), ReasonRejected, 486},
		{"508 capacity", turnErr(stun.CodeInsufficientCapacity), ReasonRejected, 508},
		{"refused", &net.OpError{Op: "read", Err: os.NewSyscallError("recvfrom", syscall.ECONNREFUSED)}, ReasonRefused, 0},
		{"dns", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, ReasonResolve, 0},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ReasonTimeout, 0},
		{"net timeout", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, ReasonTimeout, 0},
		{"retransmissions", fmt.Errorf("%w: abc", errAllRetransmissions), ReasonTimeout, 0},
		{"tls record", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonTLS, 0},
		{"tls unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonTLS, 0},
		{"other", errors.New("boom"), ReasonError, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Classify(tt.err)
			if f.Reason != tt.want || f.Code != tt.code || f.Detail == "" {
				t.Errorf("Classify(%v) = %+v, want %s %d", tt.err, f, tt.want, tt.code)
			}
		})
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	return testcert.New(t, testcert.Options{CommonName: "edge.test"}).TLS
}

// TestTURNS gathers through a TLS listener: refused as a TLS failure when the
// certificate is not trusted, a relay candidate "via tls" when told to skip
// verification.
func TestTURNS(t *testing.T) {
	s := startRelay(t, func(c *relay.Config) {
		c.Listeners = append(c.Listeners, relay.ListenerConfig{Network: relay.TLS, Addr: netip.MustParseAddrPort("127.0.0.1:0")})
		c.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
	})
	url := "turns:" + relayAddr(s, relay.TLS) + "?transport=tcp"
	for _, tt := range []struct {
		name     string
		insecure bool
		relays   int
		want     Reason
	}{
		{"untrusted certificate", false, 0, ReasonTLS},
		{"verification skipped", true, 1, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, mustURLs(t, url), goodCreds())
			cfg.InsecureSkipVerify = tt.insecure
			rep, err := Gather(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			sr := rep.Servers[0]
			if sr.Relay != tt.relays {
				t.Errorf("%d relay candidates, want %d (%+v)", sr.Relay, tt.relays, sr)
			}
			switch {
			case tt.want == "" && sr.Failure != nil:
				t.Errorf("failure %v", sr.Failure)
			case tt.want != "" && (sr.Failure == nil || sr.Failure.Reason != tt.want):
				t.Errorf("failure %v, want %s", sr.Failure, tt.want)
			}
			for _, c := range rep.Candidates {
				if c.Type == "relay" && c.RelayProtocol != "tls" {
					t.Errorf("relay via %q, want tls", c.RelayProtocol)
				}
			}
		})
	}
}
