package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Reason says why a server failed. Each value doubles as a JSON value and a
// word in the table.
type Reason string

// Failure reasons.
const (
	ReasonAuth     Reason = "auth"     // 401 Unauthorized: wrong, expired or forged credentials
	ReasonRejected Reason = "rejected" // another STUN error: 403, 437, 486 quota, 508 capacity…
	ReasonTimeout  Reason = "timeout"  // no answer before the deadline
	ReasonRefused  Reason = "refused"  // connection refused / ICMP port unreachable
	ReasonTLS      Reason = "tls"      // TLS handshake or certificate failure
	ReasonResolve  Reason = "resolve"  // the host name does not resolve
	ReasonNoCand   Reason = "no-candidate"
	ReasonError    Reason = "error" // anything else
)

// Failure is why one server gave no candidate.
type Failure struct {
	Reason Reason `json:"reason"`
	// Code is the STUN error code (401, 403, 486, 508…) for auth and rejected.
	Code   int    `json:"code,omitempty"`
	Detail string `json:"detail"`
}

func (f *Failure) String() string {
	if f.Code != 0 {
		return fmt.Sprintf("%s (%d): %s", f.Reason, f.Code, f.Detail)
	}
	return fmt.Sprintf("%s: %s", f.Reason, f.Detail)
}

// definitive reports whether ICE, trying the same server, would fail the same
// way, so it need not be waited for. Rejections (486 quota, 508 capacity) are
// not: ICE's own allocation may be the one that made the server refuse ours.
func (f *Failure) definitive() bool {
	switch f.Reason {
	case ReasonAuth, ReasonRefused, ReasonTLS, ReasonResolve:
		return true
	}
	return false
}

// Classify maps an error from a STUN/TURN exchange (pion/turn's client, a
// dial, a TLS handshake) to a Failure. nil yields nil.
func Classify(err error) *Failure {
	if err == nil {
		return nil
	}
	f := &Failure{Reason: ReasonError, Detail: err.Error()}
	var te *stun.TurnError
	var dns *net.DNSError
	var ne net.Error
	var rh tls.RecordHeaderError
	var ae tls.AlertError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &te):
		f.Code = int(te.ErrorCodeAttr.Code)
		f.Reason = ReasonRejected
		if te.ErrorCodeAttr.Code == stun.CodeUnauthorized {
			f.Reason = ReasonAuth
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		f.Reason = ReasonRefused
	case errors.As(err, &dns):
		f.Reason = ReasonResolve
	case errors.As(err, &rh), errors.As(err, &ae), errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		f.Reason = ReasonTLS
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &ne) && ne.Timeout(), errors.Is(err, errAllRetransmissions):
		f.Reason = ReasonTimeout
	}
	return f
}

// errAllRetransmissions matches pion/turn's unexported "all retransmissions
// failed" by text (see isRetransmitErr).
var errAllRetransmissions = errors.New("all retransmissions failed")

// Diagnosis is the outcome of trying one server directly.
type Diagnosis struct {
	// Took is how long the exchange took, failed or not.
	Took time.Duration `json:"took_ns"`
	// Mapped is the server-reflexive address seen by the server ("" unknown).
	Mapped string `json:"mapped,omitempty"`
	// Relayed is the relayed transport address of the test allocation.
	Relayed string `json:"relayed,omitempty"`
	// Failure is nil on success.
	Failure *Failure `json:"failure,omitempty"`
}

// Diagnose tries u directly, bounded by ctx: a STUN Binding for stun: URLs, a
// TURN Allocate (then its release) for turn: and turns: ones, over the URL's
// transport. turns: over UDP (DTLS) is not tried (Failure nil, Took 0).
func Diagnose(ctx context.Context, u *stun.URI, insecureSkipVerify bool, now func() time.Time) Diagnosis {
	if now == nil {
		now = time.Now
	}
	start := now()
	d := diagnose(ctx, u, insecureSkipVerify)
	d.Took = now().Sub(start)
	return d
}

func diagnose(ctx context.Context, u *stun.URI, insecureSkipVerify bool) Diagnosis {
	hostPort := net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var conn net.PacketConn
	var server net.Addr
	switch {
	case u.Proto == stun.ProtoTypeUDP && u.Scheme == stun.SchemeTypeTURNS:
		return Diagnosis{}
	case u.Proto == stun.ProtoTypeUDP:
		var dialer net.Dialer
		c, err := dialer.DialContext(ctx, "udp", hostPort)
		if err != nil {
			return Diagnosis{Failure: Classify(err)}
		}
		uc := c.(*net.UDPConn) //nolint:forcetypeassert // "udp" dials a *net.UDPConn
		conn = &connectedPC{UDPConn: uc, cancel: cancel}
		server = uc.RemoteAddr()
	default:
		var dialer net.Dialer
		c, err := dialer.DialContext(ctx, "tcp", hostPort)
		if err != nil {
			return Diagnosis{Failure: Classify(err)}
		}
		server = c.RemoteAddr()
		if u.Scheme == stun.SchemeTypeTURNS {
			tc := tls.Client(c, &tls.Config{ServerName: u.Host, InsecureSkipVerify: insecureSkipVerify, MinVersion: tls.VersionTLS12}) //nolint:gosec // operator's choice
			if err := tc.HandshakeContext(ctx); err != nil {
				_ = c.Close()
				return Diagnosis{Failure: Classify(err)}
			}
			c = tc
		}
		conn = turn.NewSTUNConn(c)
	}
	// Closing conn ends the read loop pion's Listen started.
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	cfg := &turn.ClientConfig{Conn: conn, RTO: 250 * time.Millisecond}
	if isTURN(u) {
		cfg.TURNServerAddr, cfg.Username, cfg.Password = server.String(), u.Username, u.Password
	} else {
		cfg.STUNServerAddr = server.String()
	}
	client, err := turn.NewClient(cfg)
	if err != nil {
		return Diagnosis{Failure: Classify(err)}
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		return Diagnosis{Failure: Classify(err)}
	}
	if !isTURN(u) {
		mapped, err := bind(ctx, client, server)
		if err != nil {
			return Diagnosis{Failure: classifyConn(conn, err)}
		}
		return Diagnosis{Mapped: mapped.String()}
	}
	relayed, err := client.AllocateWithContext(ctx)
	if err != nil {
		return Diagnosis{Failure: classifyConn(conn, err)}
	}
	d := Diagnosis{Relayed: relayed.LocalAddr().String()}
	_ = relayed.Close() // Refresh with lifetime 0 (RFC 8656 section 7.2)
	return d
}

// bind runs one STUN Binding transaction (RFC 8489 section 6) bounded by ctx.
func bind(ctx context.Context, client *turn.Client, server net.Addr) (net.Addr, error) {
	msg, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	res, err := client.PerformTransactionWithContext(msg, server, false, ctx)
	if err != nil {
		return nil, err
	}
	if res.Msg.Type.Class == stun.ClassErrorResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(res.Msg)
		return nil, &stun.TurnError{StunMessageType: res.Msg.Type, ErrorCodeAttr: code}
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res.Msg); err != nil {
		return nil, err
	}
	return &net.UDPAddr{IP: xor.IP, Port: xor.Port}, nil
}

// classifyConn prefers the socket's own error (ICMP refusal) over the
// transaction's: pion reports a refused UDP server as a timeout.
func classifyConn(conn net.PacketConn, err error) *Failure {
	if c, ok := conn.(interface{ sockErr() error }); ok {
		if se := c.sockErr(); se != nil {
			return Classify(se)
		}
	}
	if err != nil && isRetransmitErr(err) {
		return Classify(fmt.Errorf("%w: %w", errAllRetransmissions, err))
	}
	return Classify(err)
}

func isRetransmitErr(err error) bool {
	return err != nil && strings.Contains(err.Error(), "all retransmissions failed")
}
