package auth

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/auth/mras")

const testAPIKey = "test-api-key-0123456789"

var testRelays = []RelayInfo{
	{Location: LocationInternet, HostName: "edge.example.com", UDPPort: 3478, TCPPort: 443},
	{Location: LocationIntranet, HostName: "10.0.0.5", UDPPort: 3478},
}

// results records OnRequest calls.
type results struct {
	mu  sync.Mutex
	got []string
}

func (r *results) on(api, result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, api+"/"+result)
}

func (r *results) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return ""
	}
	return r.got[len(r.got)-1]
}

func newTestService(t *testing.T, mod func(*ServiceConfig)) (*httptest.Server, *results) {
	t.Helper()
	res := &results{}
	cfg := ServiceConfig{
		Keyring: NewKeyring(keyNew, keyOld),
		Relays:  testRelays,
		APIKeys: []string{"other-key", testAPIKey},
		Logger:  discardLogger(),
		Now:     (&fixedClock{t: t0}).Now,
		OnRequest: func(api, result string) {
			res.on(api, result)
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, res
}

func postMRAS(t *testing.T, srv *httptest.Server, key string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/mras", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", MRASContentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// TestMRASGolden posts every testdata/auth/mras/*.request.xml and compares
// the answer with the matching *.response.xml (-update rewrites them).
func TestMRASGolden(t *testing.T) {
	srv, res := newTestService(t, nil)
	tests := []struct {
		name   string
		status int
		result string
	}{
		{"single", http.StatusOK, ResultOK},
		{"multi", http.StatusOK, ResultOK},
		{"version-mismatch", http.StatusBadRequest, ResultVersionMismatch},
		{"doctype", http.StatusBadRequest, ResultMalformed},
		{"no-identity", http.StatusBadRequest, ResultMalformed},
		{"wrong-namespace", http.StatusBadRequest, ResultMalformed},
		{"too-many", http.StatusRequestEntityTooLarge, ResultMalformed},
	}
	dir := filepath.Join("..", "testdata", "auth", "mras")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join(dir, tt.name+".request.xml"))
			if err != nil {
				t.Fatal(err)
			}
			status, got := postMRAS(t, srv, testAPIKey, body)
			if status != tt.status {
				t.Errorf("status = %d, want %d; body:\n%s", status, tt.status, got)
			}
			if r := res.last(); r != "mras/"+tt.result {
				t.Errorf("OnRequest = %q, want mras/%s", r, tt.result)
			}
			golden := filepath.Join(dir, tt.name+".response.xml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("response differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// TestMRASCredentialsValidate checks that what the service issues validates
// on a relay's Validator, with the requested duration capped.
func TestMRASCredentialsValidate(t *testing.T) {
	srv, _ := newTestService(t, func(c *ServiceConfig) { c.MaxDuration = 90 * time.Minute })
	v := NewValidator(ValidatorConfig{Keyring: NewKeyring(keyNew, keyOld), Now: (&fixedClock{t: t0}).Now})
	body := `<request xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" requestID="1" version="2.0" to="sip:a@b" from="sip:c@d">
	<credentialsRequest credentialsRequestID="short"><identity>sip:c@d</identity><duration>30</duration></credentialsRequest>
	<credentialsRequest credentialsRequestID="long"><identity>sip:c@d</identity><duration>480</duration></credentialsRequest>
	<credentialsRequest credentialsRequestID="none"><identity>sip:c@d</identity></credentialsRequest>
	</request>`
	status, out := postMRAS(t, srv, testAPIKey, []byte(body))
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, out)
	}
	var resp MRASResponse
	if err := xml.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"short": 30, "long": 90, "none": 90}
	if len(resp.Responses) != len(want) {
		t.Fatalf("%d credentialsResponse, want %d", len(resp.Responses), len(want))
	}
	for _, cr := range resp.Responses {
		if cr.Credentials.Duration != want[cr.ID] {
			t.Errorf("%s: duration %d, want %d", cr.ID, cr.Credentials.Duration, want[cr.ID])
		}
		c, err := v.Lookup(cr.Credentials.Username)
		if err != nil {
			t.Fatalf("%s: Lookup: %v", cr.ID, err)
		}
		if len(c.Passwords) != 1 || c.Passwords[0] != cr.Credentials.Password || c.KeyIDs[0] != keyNew.ID || c.UserID != "sip:c@d" {
			t.Errorf("%s: credential %+v does not match the issued password", cr.ID, c)
		}
		if got := c.Expiry.Sub(t0); got != time.Duration(want[cr.ID])*time.Minute {
			t.Errorf("%s: expiry in %v, want %d minutes", cr.ID, got, want[cr.ID])
		}
		if len(cr.MediaRelays) != len(testRelays) || cr.MediaRelays[0].HostName != "edge.example.com" || cr.MediaRelays[1].TCPPort != 0 {
			t.Errorf("%s: relays %+v", cr.ID, cr.MediaRelays)
		}
	}
}

func TestServiceRefusals(t *testing.T) {
	srv, res := newTestService(t, func(c *ServiceConfig) {
		c.MaxBodyBytes = 1024
		c.Authorize = func(_ *http.Request, identity string) error {
			if strings.HasPrefix(identity, "sip:banned") {
				return errors.New("banned")
			}
			return nil
		}
	})
	good := `<request xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" requestID="1" version="2.0" to="sip:a@b" from="sip:c@d"><credentialsRequest credentialsRequestID="1"><identity>%s</identity></credentialsRequest></request>`
	tests := []struct {
		name        string
		method      string
		path        string
		key         string
		contentType string
		body        string
		status      int
		result      string // "" when OnRequest must not be called
		phrase      string // MRAS reasonPhrase expected in the body
	}{
		{name: "mras no key", method: "POST", path: "/mras", body: fmt.Sprintf(good, "sip:c@d"), status: 401, result: "mras/unauthorized", phrase: PhraseForbidden},
		{name: "mras wrong key", method: "POST", path: "/mras", key: "wrong", body: fmt.Sprintf(good, "sip:c@d"), status: 401, result: "mras/unauthorized"},
		{name: "mras key prefix", method: "POST", path: "/mras", key: testAPIKey[:10], body: fmt.Sprintf(good, "sip:c@d"), status: 401, result: "mras/unauthorized"},
		{name: "mras wrong content type", method: "POST", path: "/mras", key: testAPIKey, contentType: "text/plain", body: fmt.Sprintf(good, "sip:c@d"), status: 415, result: "mras/malformed"},
		{name: "mras oversize body", method: "POST", path: "/mras", key: testAPIKey, body: fmt.Sprintf(good, strings.Repeat("x", 2000)), status: 413, result: "mras/malformed", phrase: PhraseRequestTooLarge},
		{name: "mras not xml", method: "POST", path: "/mras", key: testAPIKey, body: "{}", status: 400, result: "mras/malformed", phrase: PhraseRequestMalformed},
		{name: "mras truncated", method: "POST", path: "/mras", key: testAPIKey, body: fmt.Sprintf(good, "sip:c@d")[:120], status: 400, result: "mras/malformed"},
		{name: "mras identity too long", method: "POST", path: "/mras", key: testAPIKey, body: fmt.Sprintf(good, strings.Repeat("y", 300)), status: 400, result: "mras/malformed"},
		{name: "mras forbidden identity", method: "POST", path: "/mras", key: testAPIKey, body: fmt.Sprintf(good, "sip:banned@d"), status: 403, result: "mras/forbidden", phrase: PhraseForbidden},
		{name: "mras GET not allowed", method: "GET", path: "/mras", key: testAPIKey, status: 405},
		{name: "json no key", method: "GET", path: "/credentials?username=bob", status: 401, result: "json/unauthorized"},
		{name: "json bad ttl", method: "GET", path: "/credentials?username=bob&ttl=-5", key: testAPIKey, status: 400, result: "json/malformed"},
		{name: "json ttl not a number", method: "GET", path: "/credentials?username=bob&ttl=1h", key: testAPIKey, status: 400, result: "json/malformed"},
		{name: "json control char identity", method: "GET", path: "/credentials?username=bob%00", key: testAPIKey, status: 400, result: "json/malformed"},
		{name: "json forbidden identity", method: "GET", path: "/credentials?username=sip:banned@x", key: testAPIKey, status: 403, result: "json/forbidden"},
		{name: "json oversize form", method: "POST", path: "/credentials", key: testAPIKey, contentType: "application/x-www-form-urlencoded", body: "username=" + strings.Repeat("z", 2000), status: 413, result: "json/malformed"},
		{name: "unknown path", method: "GET", path: "/other", key: testAPIKey, status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := res.last()
			res.mu.Lock()
			n := len(res.got)
			res.mu.Unlock()
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			ct := tt.contentType
			if ct == "" && tt.path == "/mras" {
				ct = MRASContentType
			}
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			res.mu.Lock()
			calls := len(res.got) - n
			res.mu.Unlock()
			switch {
			case tt.result == "" && calls != 0:
				t.Errorf("OnRequest called (%s) for a request outside the API", res.last())
			case tt.result != "" && (calls != 1 || res.last() != tt.result):
				t.Errorf("OnRequest: %d calls, last %q (before %q), want one %q", calls, res.last(), before, tt.result)
			}
			if tt.phrase != "" {
				var r MRASResponse
				if err := xml.Unmarshal(body, &r); err != nil {
					t.Fatalf("error body is not an MRAS response: %v\n%s", err, body)
				}
				if r.ReasonPhrase != tt.phrase || len(r.Responses) != 0 {
					t.Errorf("reasonPhrase = %q with %d responses, want %q and none", r.ReasonPhrase, len(r.Responses), tt.phrase)
				}
			}
		})
	}
}

func TestJSONCredentials(t *testing.T) {
	srv, res := newTestService(t, nil)
	v := NewValidator(ValidatorConfig{Keyring: NewKeyring(keyNew), Now: (&fixedClock{t: t0}).Now})
	tests := []struct {
		name     string
		method   string
		query    url.Values
		wantTTL  int64
		wantUser string
	}{
		{name: "GET default ttl", method: "GET", query: url.Values{"username": {"alice"}}, wantTTL: 480 * 60, wantUser: "alice"},
		{name: "GET short ttl", method: "GET", query: url.Values{"username": {"alice"}, "ttl": {"600"}}, wantTTL: 600, wantUser: "alice"},
		{name: "GET ttl capped", method: "GET", query: url.Values{"username": {"alice"}, "ttl": {"99999999999999999"}}, wantTTL: 480 * 60, wantUser: "alice"},
		{name: "POST form", method: "POST", query: url.Values{"username": {"sip:bob@example.com"}, "ttl": {"3600"}}, wantTTL: 3600, wantUser: "sip:bob@example.com"},
		{name: "no username", method: "GET", query: url.Values{}, wantTTL: 480 * 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req *http.Request
			var err error
			if tt.method == "GET" {
				req, err = http.NewRequest("GET", srv.URL+"/credentials?"+tt.query.Encode(), nil)
			} else {
				req, err = http.NewRequest("POST", srv.URL+"/credentials", strings.NewReader(tt.query.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "bearer "+testAPIKey)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var got JSONCredentials
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.TTL != tt.wantTTL {
				t.Errorf("ttl = %d, want %d", got.TTL, tt.wantTTL)
			}
			wantURIs := []string{"turn:edge.example.com:3478?transport=udp", "turn:edge.example.com:443?transport=tcp", "turn:10.0.0.5:3478?transport=udp"}
			if strings.Join(got.URIs, " ") != strings.Join(wantURIs, " ") {
				t.Errorf("uris = %q, want %q", got.URIs, wantURIs)
			}
			c, err := v.Lookup(got.Username)
			if err != nil {
				t.Fatalf("Lookup(%q): %v", got.Username, err)
			}
			if c.Passwords[0] != got.Password || c.Expiry.Sub(t0) != time.Duration(tt.wantTTL)*time.Second {
				t.Errorf("issued %+v, validator says %+v", got, c)
			}
			if tt.wantUser != "" && c.UserID != tt.wantUser {
				t.Errorf("UserID = %q, want %q", c.UserID, tt.wantUser)
			}
			if r := res.last(); r != "json/ok" {
				t.Errorf("OnRequest = %q", r)
			}
		})
	}
}

func TestServiceAnonymousAndEmptyKeyring(t *testing.T) {
	ring := NewKeyring()
	srv, res := newTestService(t, func(c *ServiceConfig) {
		c.APIKeys = nil
		c.AllowAnonymous = true
		c.Keyring = ring
	})
	get := func() int {
		resp, err := srv.Client().Get(srv.URL + "/credentials?username=a")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := get(); s != http.StatusInternalServerError || res.last() != "json/error" {
		t.Fatalf("empty keyring: status %d, result %q", s, res.last())
	}
	ring.Set([]Secret{keyNew})
	if s := get(); s != http.StatusOK || res.last() != "json/ok" {
		t.Fatalf("anonymous with a key: status %d, result %q", s, res.last())
	}
}

func TestNewServiceConfig(t *testing.T) {
	ring := NewKeyring(keyNew)
	tests := []struct {
		name    string
		cfg     ServiceConfig
		wantErr error
	}{
		{name: "ok", cfg: ServiceConfig{Keyring: ring, APIKeys: []string{"k"}, Relays: testRelays}},
		{name: "anonymous explicitly", cfg: ServiceConfig{Keyring: ring, AllowAnonymous: true}},
		{name: "no keyring", cfg: ServiceConfig{APIKeys: []string{"k"}}, wantErr: ErrNoKeyring},
		{name: "no api key", cfg: ServiceConfig{Keyring: ring}, wantErr: ErrNoAPIKeys},
		{name: "empty api key", cfg: ServiceConfig{Keyring: ring, APIKeys: []string{""}}, wantErr: ErrBadAPIKey},
		{name: "bad location", cfg: ServiceConfig{Keyring: ring, AllowAnonymous: true, Relays: []RelayInfo{{Location: "moon", HostName: "h", UDPPort: 1}}}, wantErr: ErrBadRelay},
		{name: "no port", cfg: ServiceConfig{Keyring: ring, AllowAnonymous: true, Relays: []RelayInfo{{Location: "internet", HostName: "h"}}}, wantErr: ErrBadRelay},
		{name: "port range", cfg: ServiceConfig{Keyring: ring, AllowAnonymous: true, Relays: []RelayInfo{{Location: "internet", HostName: "h", UDPPort: 70000}}}, wantErr: ErrBadRelay},
		{name: "tiny max duration", cfg: ServiceConfig{Keyring: ring, AllowAnonymous: true, MaxDuration: time.Second}, wantErr: ErrBadDuration},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewService(tt.cfg)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestParseRelay(t *testing.T) {
	tests := []struct {
		in      string
		want    RelayInfo
		wantErr bool
	}{
		{in: "internet:edge.example.com:3478:443", want: RelayInfo{"internet", "edge.example.com", 3478, 443}},
		{in: "intranet:10.0.0.5:3478:0", want: RelayInfo{"intranet", "10.0.0.5", 3478, 0}},
		{in: "internet:[2001:db8::1]:3478:443", want: RelayInfo{"internet", "2001:db8::1", 3478, 443}},
		{in: "internet:host:3478", wantErr: true},
		{in: "space:host:1:2", wantErr: true},
		{in: "internet:host:x:2", wantErr: true},
		{in: "internet::1:2", wantErr: true},
		{in: "internet:host:0:0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRelay(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if u := RelayURIs([]RelayInfo{{"internet", "2001:db8::1", 3478, 0}}); len(u) != 1 || u[0] != "turn:[2001:db8::1]:3478?transport=udp" {
		t.Errorf("IPv6 URI = %q", u)
	}
}

func TestReadAPIKeys(t *testing.T) {
	keys, err := ReadAPIKeys(strings.NewReader("# keys\n\nk1\n  k2  \n"))
	if err != nil || strings.Join(keys, ",") != "k1,k2" {
		t.Fatalf("keys = %q, %v", keys, err)
	}
}

func BenchmarkServeMRAS(b *testing.B) {
	s, err := NewService(ServiceConfig{Keyring: NewKeyring(keyNew), Relays: testRelays, APIKeys: []string{testAPIKey}, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	body, err := os.ReadFile(filepath.Join("..", "testdata", "auth", "mras", "single.request.xml"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest("POST", "/mras", bytes.NewReader(body))
		req.Header.Set("Content-Type", MRASContentType)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
