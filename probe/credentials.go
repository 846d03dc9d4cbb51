package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"

	"github.com/avedge/avedge/auth"
)

// MaxAnswerBytes bounds a credential service answer; a longer one is refused.
const MaxAnswerBytes = 64 << 10

// DefaultServiceTimeout bounds a credential service request when
// Service.Client is nil.
const DefaultServiceTimeout = 10 * time.Second

// Credentials are TURN long-term credentials.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"-"`
	// TTL is how long the service said they are valid; 0 when unknown.
	TTL time.Duration `json:"ttl,omitempty"`
}

// Grant is a credential service answer: credentials and the relays to use.
type Grant struct {
	Credentials
	// URLs are TURN URIs (RFC 7065): the JSON answer's "uris", or the MRAS
	// mediaRelayList as "turn:host:port?transport=udp|tcp".
	URLs []string `json:"urls"`
}

// Service says how to reach the credential service.
type Service struct {
	// URL is the service's base URL ("https://mras.example.com"); /mras or
	// /credentials is appended.
	URL string
	// APIKey is sent as "Authorization: Bearer <key>"; "" sends none.
	APIKey string
	// Identity is the identity credentials are asked for. Empty: "avedge-probe".
	Identity string
	// TTL is the lifetime asked for; 0 lets the service choose.
	TTL time.Duration
	// MRAS selects the MRAS XML API (POST /mras); false selects the JSON API
	// (GET /credentials).
	MRAS bool
	// Client sends the request; nil means an http.Client with
	// DefaultServiceTimeout.
	Client *http.Client
}

// FetchCredentials asks the credential service for credentials and the relay
// list. A 401 or 403 answer (or an MRAS reasonPhrase of Forbidden) wraps
// ErrAuthRefused; other failures wrap ErrServiceFailed or ErrServiceAnswer.
func FetchCredentials(ctx context.Context, s Service) (Grant, error) {
	base, err := url.Parse(strings.TrimSuffix(s.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return Grant{}, fmt.Errorf("probe: service URL %q: want http(s)://host[:port]: %w", s.URL, ErrServiceFailed)
	}
	identity := s.Identity
	if identity == "" {
		identity = "avedge-probe"
	}
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: DefaultServiceTimeout}
	}
	var req *http.Request
	if s.MRAS {
		body, err := MRASRequest(s.URL, identity, s.TTL)
		if err != nil {
			return Grant{}, err
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, base.String()+"/mras", bytes.NewReader(body))
		if err != nil {
			return Grant{}, fmt.Errorf("probe: service request: %w", err)
		}
		req.Header.Set("Content-Type", auth.MRASContentType)
	} else {
		q := url.Values{"username": {identity}}
		if s.TTL > 0 {
			q.Set("ttl", strconv.FormatInt(int64((s.TTL+time.Second-1)/time.Second), 10))
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, base.String()+"/credentials?"+q.Encode(), nil)
		if err != nil {
			return Grant{}, fmt.Errorf("probe: service request: %w", err)
		}
	}
	if s.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Grant{}, fmt.Errorf("probe: credential service: %w: %w", ErrServiceFailed, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return Grant{}, fmt.Errorf("probe: credential service %s: %w", resp.Status, ErrAuthRefused)
	case resp.StatusCode != http.StatusOK:
		return Grant{}, fmt.Errorf("probe: credential service %s: %w", resp.Status, ErrServiceFailed)
	}
	if s.MRAS {
		return ParseMRASAnswer(resp.Body)
	}
	return ParseJSONAnswer(resp.Body)
}

// readAnswer reads at most MaxAnswerBytes of r.
func readAnswer(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("probe: read answer: %w: %w", ErrServiceFailed, err)
	}
	if len(data) > MaxAnswerBytes {
		return nil, fmt.Errorf("probe: answer over %d bytes: %w", MaxAnswerBytes, ErrAnswerTooLarge)
	}
	return data, nil
}

// ParseJSONAnswer parses the TURN REST JSON answer
// (draft-uberti-behave-turn-rest-00 section 2.2):
//
//	{"username": "...", "password": "...", "ttl": 86400,
//	 "uris": ["turn:turn.example.com:3478?transport=udp", ...]}
func ParseJSONAnswer(r io.Reader) (Grant, error) {
	data, err := readAnswer(r)
	if err != nil {
		return Grant{}, err
	}
	var a auth.JSONCredentials
	if err := json.Unmarshal(data, &a); err != nil {
		return Grant{}, fmt.Errorf("probe: JSON answer: %w: %w", ErrServiceAnswer, err)
	}
	if a.Username == "" || a.Password == "" {
		return Grant{}, fmt.Errorf("probe: JSON answer without username or password: %w", ErrServiceAnswer)
	}
	if a.TTL < 0 || a.TTL > int64(100*365*24*time.Hour/time.Second) {
		return Grant{}, fmt.Errorf("probe: JSON answer ttl %d: %w", a.TTL, ErrServiceAnswer)
	}
	return Grant{Credentials: Credentials{Username: a.Username, Password: a.Password, TTL: time.Duration(a.TTL) * time.Second}, URLs: a.URIs}, nil
}

// ParseMRASAnswer parses an MRAS response document ([MS-AVEDGEA] 2.2.3) and
// returns its first credentialsResponse, with the mediaRelayList turned into
// TURN URIs. A reasonPhrase other than "OK" is an error: "Forbidden" wraps
// ErrAuthRefused, the others ErrServiceFailed.
func ParseMRASAnswer(r io.Reader) (Grant, error) {
	data, err := readAnswer(r)
	if err != nil {
		return Grant{}, err
	}
	var resp auth.MRASResponse
	if err := xml.Unmarshal(data, &resp); err != nil {
		return Grant{}, fmt.Errorf("probe: MRAS answer: %w: %w", ErrServiceAnswer, err)
	}
	switch resp.ReasonPhrase {
	case auth.PhraseOK:
	case auth.PhraseForbidden:
		return Grant{}, fmt.Errorf("probe: MRAS answer %q: %w", resp.ReasonPhrase, ErrAuthRefused)
	default:
		return Grant{}, fmt.Errorf("probe: MRAS answer %q: %w", clip(resp.ReasonPhrase, 64), ErrServiceFailed)
	}
	if len(resp.Responses) == 0 {
		return Grant{}, fmt.Errorf("probe: MRAS answer without credentialsResponse: %w", ErrServiceAnswer)
	}
	cr := resp.Responses[0]
	c := cr.Credentials
	if c.Username == "" || c.Password == "" {
		return Grant{}, fmt.Errorf("probe: MRAS answer without username or password: %w", ErrServiceAnswer)
	}
	if c.Duration < 0 || c.Duration > 100*365*24*60 {
		return Grant{}, fmt.Errorf("probe: MRAS answer duration %d: %w", c.Duration, ErrServiceAnswer)
	}
	relays := make([]auth.RelayInfo, 0, len(cr.MediaRelays))
	for _, m := range cr.MediaRelays {
		if m.HostName == "" || strings.ContainsAny(m.HostName, " \t\r\n/?#@") ||
			m.UDPPort < 0 || m.UDPPort > 65535 || m.TCPPort < 0 || m.TCPPort > 65535 {
			return Grant{}, fmt.Errorf("probe: MRAS mediaRelay %q udp %d tcp %d: %w", clip(m.HostName, 64), m.UDPPort, m.TCPPort, ErrServiceAnswer)
		}
		relays = append(relays, auth.RelayInfo{Location: m.Location, HostName: m.HostName, UDPPort: m.UDPPort, TCPPort: m.TCPPort})
	}
	g := Grant{
		Credentials: Credentials{Username: c.Username, Password: c.Password, TTL: time.Duration(c.Duration) * time.Minute},
		URLs:        auth.RelayURIs(relays),
	}
	if _, err := ParseURLs(g.URLs, Credentials{}); err != nil {
		return Grant{}, fmt.Errorf("probe: MRAS mediaRelayList: %w: %w", ErrServiceAnswer, err)
	}
	return g, nil
}

// mrasRequestDoc is the request document of [MS-AVEDGEA] 2.2.3.
type mrasRequestDoc struct {
	XMLName   xml.Name `xml:"http://schemas.microsoft.com/2006/09/sip/mrasp request"`
	RequestID string   `xml:"requestID,attr"`
	Version   string   `xml:"version,attr"`
	To        string   `xml:"to,attr"`
	From      string   `xml:"from,attr"`
	Route     string   `xml:"route,attr"`
	Request   struct {
		ID       string `xml:"credentialsRequestID,attr"`
		Identity string `xml:"identity"`
		Location string `xml:"location"`
		Duration int    `xml:"duration,omitempty"`
	} `xml:"credentialsRequest"`
}

// MRASRequest returns an MRAS request document asking for credentials for
// identity, valid for ttl (rounded up to minutes; 0 lets the service choose),
// addressed to service.
func MRASRequest(service, identity string, ttl time.Duration) ([]byte, error) {
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	d := mrasRequestDoc{RequestID: hex.EncodeToString(id[:]), Version: auth.MRASServerVersion, To: service, From: identity, Route: "loadbalanced"}
	d.Request.ID = "1"
	d.Request.Identity = identity
	d.Request.Location = auth.LocationInternet
	if ttl > 0 {
		d.Request.Duration = int((ttl + time.Minute - 1) / time.Minute)
	}
	out, err := xml.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("probe: MRAS request: %w", err)
	}
	return append([]byte(xml.Header), out...), nil
}

// ParseURLs parses stun:, stuns:, turn: and turns: URIs (RFC 7064, RFC 7065)
// and sets creds on the turn ones that carry none.
func ParseURLs(raw []string, creds Credentials) ([]*stun.URI, error) {
	out := make([]*stun.URI, 0, len(raw))
	for _, s := range raw {
		u, err := stun.ParseURI(s)
		if err != nil {
			return nil, fmt.Errorf("probe: %q: %w: %w", clip(s, 128), ErrBadURL, err)
		}
		if u.Scheme == stun.SchemeTypeTURN || u.Scheme == stun.SchemeTypeTURNS {
			if u.Username == "" {
				u.Username, u.Password = creds.Username, creds.Password
			}
		}
		out = append(out, u)
	}
	return out, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
