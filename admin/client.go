package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Client calls the admin API, as avedge-ctl does.
type Client struct {
	base string       // "http://host:port" or "https://…"; "http://unix" for a socket. Static.
	key  string       // Static.
	http *http.Client // Static.
}

// ClientConfig says where the API is and how to reach it.
type ClientConfig struct {
	// URL is the API: http://127.0.0.1:9443, https://relay.example:9443, or
	// unix:///run/avedge/admin.sock.
	URL string
	// Key is the API key (not needed over a Unix socket).
	Key string
	// CAFile, for https, is the certificate (or CA) to trust; empty: the system's.
	CAFile string
	// Timeout bounds each call. Zero: 10 seconds.
	Timeout time.Duration
}

// NewClient checks cfg and returns a client.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("admin URL %q: want http://host:port, https://host:port or unix:///path/to/admin.sock", cfg.URL)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{}
	c := &Client{key: cfg.Key, http: &http.Client{Transport: tr, Timeout: timeout}}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("admin URL %q: no host", cfg.URL)
		}
		c.base = u.Scheme + "://" + u.Host
	case "unix":
		path := u.Path
		if path == "" {
			path = u.Opaque
		}
		if path == "" {
			return nil, fmt.Errorf("admin URL %q: want unix:///path/to/admin.sock", cfg.URL)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://unix"
	default:
		return nil, fmt.Errorf("admin URL %q: scheme %q is not http, https or unix", cfg.URL, u.Scheme)
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("admin CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin CA file %s: no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return c, nil
}

// APIError is an error answer of the API.
type APIError struct {
	Status  int    // HTTP status
	Message string // the answer's "error"
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// StatusOf returns the HTTP status of an API error, or 0 when err is not one (the relay was
// not reached, or did not answer).
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// do calls method path (with query q and body in, both optional) and decodes the answer into
// out.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin: answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodGet, "/v1/status", nil, nil, &st)
}

// Allocations is GET /v1/allocations: one page.
func (c *Client) Allocations(ctx context.Context, q Query) (AllocationPage, error) {
	v := url.Values{}
	if q.User != "" {
		v.Set("user", q.User)
	}
	if q.Client != "" {
		v.Set("client", q.Client)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.After != 0 {
		v.Set("cursor", strconv.FormatUint(q.After, 10))
	}
	var p AllocationPage
	return p, c.do(ctx, http.MethodGet, "/v1/allocations", v, nil, &p)
}

// AllAllocations follows the pages of GET /v1/allocations to the end (at most max
// allocations; 0: no limit).
func (c *Client) AllAllocations(ctx context.Context, q Query, max int) ([]Allocation, error) {
	var all []Allocation
	for {
		p, err := c.Allocations(ctx, q)
		if err != nil {
			return all, err
		}
		all = append(all, p.Allocations...)
		if p.Next == "" || (max > 0 && len(all) >= max) {
			if max > 0 && len(all) > max {
				all = all[:max]
			}
			return all, nil
		}
		if q.After, err = strconv.ParseUint(p.Next, 10, 64); err != nil {
			return all, fmt.Errorf("admin: cursor %q: %w", p.Next, err)
		}
	}
}

// Allocation is GET /v1/allocations/{id}.
func (c *Client) Allocation(ctx context.Context, id string) (Allocation, error) {
	var a Allocation
	return a, c.do(ctx, http.MethodGet, "/v1/allocations/"+url.PathEscape(id), nil, nil, &a)
}

// EndAllocation is DELETE /v1/allocations/{id}.
func (c *Client) EndAllocation(ctx context.Context, id string) (Ended, error) {
	var e Ended
	return e, c.do(ctx, http.MethodDelete, "/v1/allocations/"+url.PathEscape(id), nil, nil, &e)
}

// EndUser is DELETE /v1/allocations?user=U.
func (c *Client) EndUser(ctx context.Context, user string) (Ended, error) {
	var e Ended
	return e, c.do(ctx, http.MethodDelete, "/v1/allocations", url.Values{"user": {user}}, nil, &e)
}

// RevocationList is the answer to GET /v1/revocations.
type RevocationList struct {
	Revocations []Revocation `json:"revocations"`
	File        string       `json:"file,omitempty"`
}

// Revocations is GET /v1/revocations.
func (c *Client) Revocations(ctx context.Context) (RevocationList, error) {
	var l RevocationList
	return l, c.do(ctx, http.MethodGet, "/v1/revocations", nil, nil, &l)
}

// Revoke is POST /v1/revocations.
func (c *Client) Revoke(ctx context.Context, r RevokeRequest) (RevokeResult, error) {
	var res RevokeResult
	return res, c.do(ctx, http.MethodPost, "/v1/revocations", nil, r, &res)
}

// Unrevoke is DELETE /v1/revocations/{username}.
func (c *Client) Unrevoke(ctx context.Context, username string) error {
	return c.do(ctx, http.MethodDelete, "/v1/revocations/"+url.PathEscape(username), nil, nil, nil)
}

// Drain is POST /v1/drain; Undrain POST /v1/undrain.
func (c *Client) Drain(ctx context.Context) (DrainState, error) {
	var d DrainState
	return d, c.do(ctx, http.MethodPost, "/v1/drain", nil, nil, &d)
}

// Undrain is POST /v1/undrain.
func (c *Client) Undrain(ctx context.Context) (DrainState, error) {
	var d DrainState
	return d, c.do(ctx, http.MethodPost, "/v1/undrain", nil, nil, &d)
}

// Reload is POST /v1/reload.
func (c *Client) Reload(ctx context.Context) (Reloaded, error) {
	var r Reloaded
	err := c.do(ctx, http.MethodPost, "/v1/reload", nil, nil, &r)
	return r, err
}
