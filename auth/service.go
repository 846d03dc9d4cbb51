package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults of ServiceConfig.
const (
	// DefaultMaxDuration is MRAS's default credential lifetime.
	DefaultMaxDuration = 480 * time.Minute
	// DefaultMaxBodyBytes bounds request bodies.
	DefaultMaxBodyBytes = 64 << 10
)

// API and result labels passed to ServiceConfig.OnRequest. Each doubles as a
// metric label value.
const (
	APIMRAS = "mras"
	APIJSON = "json"

	ResultOK              = "ok"
	ResultUnauthorized    = "unauthorized"
	ResultMalformed       = "malformed"
	ResultForbidden       = "forbidden"
	ResultVersionMismatch = "version_mismatch"
	ResultError           = "error"
)

// RelayInfo describes one relay of the pool, as listed to clients.
type RelayInfo struct {
	Location string // LocationInternet or LocationIntranet
	HostName string // FQDN or IP address the clients use
	UDPPort  int    // 0: no UDP listener
	TCPPort  int    // 0: no TCP listener
}

// ServiceConfig configures a Service. Every zero value is documented.
type ServiceConfig struct {
	// Keyring holds the secrets to mint with (the newest one). Required.
	Keyring *Keyring
	// Relays is the pool listed in every answer, in this order (unless Pool answers).
	Relays []RelayInfo
	// Pool, when set, chooses the relays of each answer, best first: location is the MRAS
	// credentialsRequest's ("" when absent, and for JSON), zone the JSON request's zone
	// field ("" when absent, and for MRAS). An empty answer (no relay of the pool healthy)
	// falls back to Relays and URIs. nil: Relays and URIs always.
	Pool func(location, zone string) []RelayInfo
	// URIs are the TURN URIs of the JSON answer; nil means derived from
	// Relays: "turn:host:udp?transport=udp" and "turn:host:tcp?transport=tcp"
	// for each relay and port.
	URIs []string
	// MaxDuration caps the requested duration; 0 means DefaultMaxDuration
	// (480 minutes). A request without a duration gets MaxDuration.
	MaxDuration time.Duration
	// APIKeys are the bearer tokens accepted ("Authorization: Bearer <key>"),
	// compared in constant time. Empty is refused unless AllowAnonymous.
	APIKeys []string
	// AllowAnonymous must be set explicitly to serve without an API key;
	// when set, every caller is served and APIKeys are not checked.
	AllowAnonymous bool
	// Authorize, when set, decides whether the caller may obtain credentials
	// for identity; a non-nil error answers Forbidden (HTTP 403). nil allows
	// every identity to every caller holding an API key.
	Authorize func(r *http.Request, identity string) error
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Logger receives one line per answered request; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// OnRequest is called once per request to /mras or /credentials with the
	// API ("mras" or "json") and the result ("ok", "unauthorized",
	// "malformed", "forbidden", "version_mismatch", "error"); nil: not called.
	OnRequest func(api, result string)
}

// Service is the credential service, an http.Handler:
//
//	POST /mras          Content-Type application/msrtc-media-relay-auth+xml:
//	                    an MRAS request document; answers an MRAS response.
//	GET|POST /credentials?username=<identity>&ttl=<seconds>[&zone=<label>]:
//	                    (POST may carry the same fields as a form body)
//	                    answers {"username","password","ttl","uris":[...]}.
//
// HTTP status: 200 OK; 400 malformed or version mismatch; 401 missing or
// wrong API key; 403 refused by Authorize; 413 body too large or more than
// MaxCredentialsRequests; 415 wrong content type; 500 no secret to mint with.
// MRAS answers carry the matching reasonPhrase in an MRAS response document.
//
// Both mint keyed usernames (see the package doc) with the keyring's newest
// secret, so the answer names its key and survives rotation exactly.
type Service struct {
	cfg     ServiceConfig // Static after construction.
	keys    [][32]byte    // SHA-256 of the API keys. Static after construction.
	uris    []string      // Static after construction.
	maxDur  time.Duration // Static after construction.
	maxBody int64         // Static after construction.
	log     *slog.Logger  // Static after construction.
	now     func() time.Time
	mux     *http.ServeMux
}

// NewService checks cfg and returns the credential service.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Keyring == nil {
		return nil, fmt.Errorf("auth: service: %w", ErrNoKeyring)
	}
	if len(cfg.APIKeys) == 0 && !cfg.AllowAnonymous {
		return nil, fmt.Errorf("auth: service: %w", ErrNoAPIKeys)
	}
	s := &Service{cfg: cfg, maxDur: cfg.MaxDuration, maxBody: cfg.MaxBodyBytes, log: cfg.Logger, now: cfg.Now}
	for i, k := range cfg.APIKeys {
		if k == "" || strings.ContainsAny(k, " \t\r\n") {
			return nil, fmt.Errorf("auth: service: API key %d: %w", i, ErrBadAPIKey)
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	for i, r := range cfg.Relays {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("auth: service: relay %d: %w", i, err)
		}
	}
	if s.maxDur == 0 {
		s.maxDur = DefaultMaxDuration
	}
	if s.maxDur < time.Minute {
		return nil, fmt.Errorf("auth: service: max duration %v below one minute: %w", s.maxDur, ErrBadDuration)
	}
	if s.maxBody == 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.uris = cfg.URIs
	if s.uris == nil {
		s.uris = RelayURIs(cfg.Relays)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /mras", s.serveMRAS)
	s.mux.HandleFunc("GET /credentials", s.serveJSON)
	s.mux.HandleFunc("POST /credentials", s.serveJSON)
	return s, nil
}

func (r RelayInfo) validate() error {
	if r.Location != LocationInternet && r.Location != LocationIntranet {
		return fmt.Errorf("location %q: want internet or intranet: %w", r.Location, ErrBadRelay)
	}
	if r.HostName == "" || strings.ContainsAny(r.HostName, " \t\r\n/?#@") {
		return fmt.Errorf("host name %q: %w", r.HostName, ErrBadRelay)
	}
	if r.UDPPort < 0 || r.UDPPort > 65535 || r.TCPPort < 0 || r.TCPPort > 65535 || r.UDPPort == 0 && r.TCPPort == 0 {
		return fmt.Errorf("ports udp %d tcp %d: %w", r.UDPPort, r.TCPPort, ErrBadRelay)
	}
	return nil
}

// ParseRelay parses "location:host:udpPort:tcpPort" (a port may be 0 for
// none; an IPv6 host is written in brackets: "internet:[2001:db8::1]:3478:443").
func ParseRelay(s string) (RelayInfo, error) {
	loc, rest, ok := strings.Cut(s, ":")
	if !ok {
		return RelayInfo{}, fmt.Errorf("auth: relay %q: want location:host:udp:tcp: %w", s, ErrBadRelay)
	}
	i := strings.LastIndexByte(rest, ':')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(rest[:i], ':')
	}
	if j <= 0 {
		return RelayInfo{}, fmt.Errorf("auth: relay %q: want location:host:udp:tcp: %w", s, ErrBadRelay)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(rest[:j], "["), "]")
	udp, err1 := strconv.Atoi(rest[j+1 : i])
	tcp, err2 := strconv.Atoi(rest[i+1:])
	if err1 != nil || err2 != nil {
		return RelayInfo{}, fmt.Errorf("auth: relay %q: ports: %w", s, ErrBadRelay)
	}
	r := RelayInfo{Location: loc, HostName: host, UDPPort: udp, TCPPort: tcp}
	if err := r.validate(); err != nil {
		return RelayInfo{}, fmt.Errorf("auth: relay %q: %w", s, err)
	}
	return r, nil
}

// RelayURIs returns the TURN URIs (RFC 7065) of relays:
// "turn:host:port?transport=udp" and "…?transport=tcp" for each port set.
func RelayURIs(relays []RelayInfo) []string {
	uris := []string{}
	for _, r := range relays {
		if r.UDPPort != 0 {
			uris = append(uris, "turn:"+net.JoinHostPort(r.HostName, strconv.Itoa(r.UDPPort))+"?transport=udp")
		}
		if r.TCPPort != 0 {
			uris = append(uris, "turn:"+net.JoinHostPort(r.HostName, strconv.Itoa(r.TCPPort))+"?transport=tcp")
		}
	}
	return uris
}

// ServeHTTP routes /mras and /credentials; anything else is 404 (405 for a
// known path with another method).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// authorized checks "Authorization: Bearer <key>" against every configured
// key in constant time (hashes compared, so lengths do not leak either).
func (s *Service) authorized(r *http.Request) bool {
	if s.cfg.AllowAnonymous {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for i := range s.keys {
		match |= subtle.ConstantTimeCompare(sum[:], s.keys[i][:])
	}
	return match == 1
}

func (s *Service) report(api, result string) {
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(api, result)
	}
}

// grant returns the duration to grant for a request of n units (0: none
// asked), capped by the configured maximum without overflowing.
func (s *Service) grant(n int64, unit time.Duration) time.Duration {
	if n <= 0 || n > int64(s.maxDur/unit) {
		return s.maxDur
	}
	return time.Duration(n) * unit
}

// mint issues a keyed credential for identity valid for d from now.
func (s *Service) mint(identity string, d time.Duration) (username, password string, err error) {
	secret, ok := s.cfg.Keyring.Newest()
	if !ok {
		return "", "", fmt.Errorf("auth: mint: %w", ErrNoSecrets)
	}
	username, password = MintMRAS(secret, identity, s.now().Add(d))
	return username, password, nil
}

// relays returns the relays to list for a request from location in zone: the pool's
// (pooled true) when it names any, else the configured ones.
func (s *Service) relays(location, zone string) (relays []RelayInfo, pooled bool) {
	if s.cfg.Pool != nil {
		if rs := s.cfg.Pool(location, zone); len(rs) > 0 {
			return rs, true
		}
	}
	return s.cfg.Relays, false
}

// validZone reports whether z may be a zone label: "", or up to 63 letters, digits, '.',
// '-' and '_'.
func validZone(z string) bool {
	if len(z) > 63 {
		return false
	}
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// mrasError is an MRAS answer other than OK.
type mrasError struct {
	status int
	phrase string
	result string
}

func (s *Service) serveMRAS(w http.ResponseWriter, r *http.Request) {
	resp := &MRASResponse{Version: MRASServerVersion, ServerVersion: MRASServerVersion}
	fail := func(e mrasError, err error) {
		resp.Responses = nil
		resp.ReasonPhrase = e.phrase
		s.log.Warn("mras request refused", "remote", r.RemoteAddr, "reason", e.phrase, "err", err)
		s.writeMRAS(w, e.status, resp)
		s.report(APIMRAS, e.result)
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="avedge"`)
		fail(mrasError{http.StatusUnauthorized, PhraseForbidden, ResultUnauthorized}, ErrUnauthorized)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != MRASContentType {
		fail(mrasError{http.StatusUnsupportedMediaType, PhraseRequestMalformed, ResultMalformed},
			fmt.Errorf("content type %q: %w", r.Header.Get("Content-Type"), ErrMRASMalformed))
		return
	}
	req, err := ParseMRASRequest(http.MaxBytesReader(w, r.Body, s.maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig), errors.Is(err, ErrMRASTooLarge):
		fail(mrasError{http.StatusRequestEntityTooLarge, PhraseRequestTooLarge, ResultMalformed}, err)
		return
	case errors.Is(err, ErrMRASVersion):
		// [MS-AVEDGEA] responseType: requestID, to and from are echoed unless
		// the request is malformed.
		resp.RequestID, resp.To, resp.From = req.RequestID, req.To, req.From
		fail(mrasError{http.StatusBadRequest, PhraseVersionMismatch, ResultVersionMismatch}, err)
		return
	case err != nil:
		fail(mrasError{http.StatusBadRequest, PhraseRequestMalformed, ResultMalformed}, err)
		return
	}
	resp.RequestID, resp.Version, resp.To, resp.From = req.RequestID, req.Version, req.To, req.From
	for _, cr := range req.Requests {
		if !ValidIdentity(cr.Identity) {
			fail(mrasError{http.StatusBadRequest, PhraseRequestMalformed, ResultMalformed},
				fmt.Errorf("identity of %d bytes: %w", len(cr.Identity), ErrMRASMalformed))
			return
		}
		if s.cfg.Authorize != nil {
			if err := s.cfg.Authorize(r, cr.Identity); err != nil {
				fail(mrasError{http.StatusForbidden, PhraseForbidden, ResultForbidden}, err)
				return
			}
		}
		d := s.grant(int64(cr.Duration), time.Minute)
		username, password, err := s.mint(cr.Identity, d)
		if err != nil {
			fail(mrasError{http.StatusInternalServerError, PhraseInternalServerError, ResultError}, err)
			return
		}
		relays, _ := s.relays(cr.Location, "")
		out := MRASCredentialsResponse{
			ID:          cr.ID,
			Credentials: MRASCredentials{Username: username, Password: password, Duration: int(d / time.Minute)},
			MediaRelays: make([]MRASRelay, len(relays)),
		}
		for i, rl := range relays {
			out.MediaRelays[i] = MRASRelay{Location: rl.Location, HostName: rl.HostName, UDPPort: rl.UDPPort, TCPPort: rl.TCPPort}
		}
		resp.Responses = append(resp.Responses, out)
	}
	resp.ReasonPhrase = PhraseOK
	s.log.Info("mras credentials issued", "remote", r.RemoteAddr, "requestID", req.RequestID, "count", len(resp.Responses))
	s.writeMRAS(w, http.StatusOK, resp)
	s.report(APIMRAS, ResultOK)
}

func (s *Service) writeMRAS(w http.ResponseWriter, status int, resp *MRASResponse) {
	h := w.Header()
	h.Set("Content-Type", MRASContentType+"; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := WriteMRASResponse(w, resp); err != nil {
		s.log.Debug("mras response not written", "err", err)
	}
}

// JSONCredentials is the JSON answer, in the de-facto TURN REST API shape
// (draft-uberti-behave-turn-rest-00 section 2.2).
type JSONCredentials struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	TTL      int64    `json:"ttl"` // seconds
	URIs     []string `json:"uris"`
}

func (s *Service) serveJSON(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, result string, err error) {
		s.log.Warn("credentials request refused", "remote", r.RemoteAddr, "status", status, "err", err)
		writeJSON(w, status, map[string]string{"error": http.StatusText(status)})
		s.report(APIJSON, result)
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="avedge"`)
		fail(http.StatusUnauthorized, ResultUnauthorized, ErrUnauthorized)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(http.StatusRequestEntityTooLarge, ResultMalformed, err)
			return
		}
		fail(http.StatusBadRequest, ResultMalformed, err)
		return
	}
	identity := r.Form.Get("username")
	if !ValidIdentity(identity) {
		fail(http.StatusBadRequest, ResultMalformed, fmt.Errorf("username of %d bytes: %w", len(identity), ErrMalformed))
		return
	}
	var want int64
	if ttl := r.Form.Get("ttl"); ttl != "" {
		n, err := strconv.ParseInt(ttl, 10, 64)
		if err != nil || n < 1 || ttl[0] == '+' {
			fail(http.StatusBadRequest, ResultMalformed, fmt.Errorf("ttl %q: %w", ttl, ErrBadDuration))
			return
		}
		want = n
	}
	zone := r.Form.Get("zone")
	if !validZone(zone) {
		fail(http.StatusBadRequest, ResultMalformed, fmt.Errorf("zone of %d bytes: %w", len(zone), ErrMalformed))
		return
	}
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(r, identity); err != nil {
			fail(http.StatusForbidden, ResultForbidden, err)
			return
		}
	}
	d := s.grant(want, time.Second)
	username, password, err := s.mint(identity, d)
	if err != nil {
		s.log.Error("credentials not minted", "err", err)
		fail(http.StatusInternalServerError, ResultError, err)
		return
	}
	s.log.Info("credentials issued", "remote", r.RemoteAddr, "identity", identity, "ttl", d)
	uris := s.uris
	if relays, pooled := s.relays("", zone); pooled {
		uris = RelayURIs(relays)
	}
	writeJSON(w, http.StatusOK, JSONCredentials{Username: username, Password: password, TTL: int64(d / time.Second), URIs: uris})
	s.report(APIJSON, ResultOK)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

// ReadAPIKeys reads API keys from r, one per line; '#' comments and blank
// lines are ignored.
func ReadAPIKeys(r io.Reader) ([]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: read API keys: %w", err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("auth: API keys: %w", ErrFileTooLarge)
	}
	var keys []string
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		keys = append(keys, line)
	}
	return keys, nil
}
