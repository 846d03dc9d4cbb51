package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"
)

// MaxRedirects bounds the 300 (Try Alternate) answers followed for one TURN URL.
const MaxRedirects = 3

// Redirect is one 300 (Try Alternate) a TURN server answered an Allocate with.
type Redirect struct {
	From string `json:"from"` // the URL as given
	To   string `json:"to"`   // the URL as followed (the ALTERNATE-SERVER's address)
}

// followRedirects returns urls with every turn: URL over UDP replaced by the server its
// Allocate is redirected to, and the redirects followed. pion's TURN client does not follow
// 300 (Try Alternate), so the probe asks first, as a browser's TURN client would follow it:
// an unauthenticated Allocate (a relay redirects before it authenticates), answered 300 with
// an ALTERNATE-SERVER, is tried again there.
//
// RFC 8489 §10: "If the client has been redirected to a server to which it has already sent
// this request within the last five minutes, it MUST ignore the redirection and consider the
// transaction to have failed. This prevents infinite ping-ponging between servers in case
// of redirection loops." A loop, or more than MaxRedirects hops, is an error wrapping
// ErrConnectivity.
func followRedirects(ctx context.Context, urls []*stun.URI, timeout time.Duration) ([]*stun.URI, []Redirect, error) {
	out := make([]*stun.URI, len(urls))
	hops := make([][]Redirect, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		out[i] = u
		if u.Scheme != stun.SchemeTypeTURN || u.Proto != stun.ProtoTypeUDP {
			continue
		}
		// Every URL at once, each within a quarter of the timeout: a relay that does not
		// answer holds gathering back by no more than that.
		wg.Go(func() { out[i], hops[i], errs[i] = follow(ctx, u, timeout/4) })
	}
	wg.Wait()
	var redirects []Redirect
	for _, h := range hops {
		redirects = append(redirects, h...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, redirects, err
	}
	return out, redirects, nil
}

// follow follows the redirects of one turn: URL over UDP within budget.
func follow(ctx context.Context, u *stun.URI, budget time.Duration) (*stun.URI, []Redirect, error) {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	v := *u
	var redirects []Redirect
	visited := map[string]bool{}
	for hop := 0; ; hop++ {
		addr := net.JoinHostPort(v.Host, strconv.Itoa(v.Port))
		if visited[addr] {
			return nil, redirects, fmt.Errorf("probe: %s: redirected back to %s: %w", urlString(u), addr, ErrConnectivity)
		}
		visited[addr] = true
		alt, ok, err := askAllocate(ctx, addr)
		if err != nil || !ok {
			return &v, redirects, nil // not redirected (or not answering: gathering will say so)
		}
		if hop == MaxRedirects {
			return nil, redirects, fmt.Errorf("probe: %s: more than %d redirects: %w", urlString(u), MaxRedirects, ErrConnectivity)
		}
		from := urlString(&v)
		v.Host, v.Port = alt.IP.String(), alt.Port
		redirects = append(redirects, Redirect{From: from, To: urlString(&v)})
	}
}

// askAllocate sends one unauthenticated Allocate (REQUESTED-TRANSPORT UDP) to addr and
// reports the ALTERNATE-SERVER of a 300 answer (ok false for any other answer), sending it
// up to three times before ctx's deadline.
func askAllocate(ctx context.Context, addr string) (alt stun.AlternateServer, ok bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return alt, false, err
	}
	defer conn.Close()
	req, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}, stun.Fingerprint)
	if err != nil {
		return alt, false, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	timeout := time.Until(deadline)
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		if _, err := conn.Write(req.Raw); err != nil {
			return alt, false, err
		}
		rd := time.Now().Add(timeout / 3)
		if rd.After(deadline) {
			rd = deadline
		}
		_ = conn.SetReadDeadline(rd)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) {
					break // resend
				}
				return alt, false, err
			}
			res := &stun.Message{Raw: buf[:n]}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			var code stun.ErrorCodeAttribute
			if code.GetFrom(res) != nil || code.Code != stun.CodeTryAlternate {
				return alt, false, nil
			}
			if err := alt.GetFrom(res); err != nil {
				return alt, false, fmt.Errorf("probe: 300 from %s without ALTERNATE-SERVER: %w", addr, err)
			}
			return alt, true, nil
		}
	}
	return alt, false, fmt.Errorf("probe: no answer to Allocate from %s", addr)
}
