package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Backend is what the API acts on: *relay.Server implements it.
type Backend interface {
	// Allocations returns the page of live allocations q asks for (q.Limit is set); the
	// error is a bad query (a client that is no address), worded for the caller.
	Allocations(q Query) (AllocationPage, error)
	// Allocation returns the live allocation id, if any.
	Allocation(id uint64) (Allocation, bool)
	// EndAllocation ends allocation id now, counted under reason (metrics' End…); false
	// if there is no such allocation.
	EndAllocation(id uint64, reason string) bool
	// EndUser ends every live allocation of user now and returns how many.
	EndUser(user, reason string) int
	// Status describes the relay (the Version and Revocations fields are left to the handler).
	Status() Status
	// Drain stops new allocations (live ones go on); Undrain takes them again.
	Drain()
	Undrain()
	// Credential returns the user a username names and its expiry (zero: none), when the
	// relay's credentials accept it now.
	Credential(username string) (user string, expiry time.Time, ok bool)
}

// End reasons the handler passes to the Backend (the labels of
// avedge_allocations_ended_total{reason}).
const (
	ReasonAdmin   = "admin"
	ReasonRevoked = "revoked"
)

// Config is the handler's configuration.
type Config struct {
	// Backend is the relay. Required.
	Backend Backend
	// Revocations is the list POST /v1/revocations adds to. Nil: a list in memory.
	Revocations *Revocations
	// APIKeys are the bearer tokens accepted ("Authorization: Bearer <key>"). Required for
	// Handler; Local serves without them.
	APIKeys []string
	// Version is reported by GET /v1/status. Empty: "dev".
	Version string
	// Reload is what POST /v1/reload (and SIGHUP) does; it returns what went wrong. Nil:
	// POST /v1/reload re-reads the revocations file only.
	Reload func() error
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves the admin API. Build it with NewHandler.
type Handler struct {
	cfg  Config         // Static.
	keys [][32]byte     // SHA-256 of each API key. Static.
	mux  *http.ServeMux // Static.
	log  *slog.Logger   // Static.
	rev  *Revocations   // Static.
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// NewHandler checks cfg and returns the API. Every request must carry one of cfg.APIKeys;
// Local serves the same API without (for a Unix socket only the relay's user can reach).
func NewHandler(cfg Config) (*Handler, error) {
	if cfg.Backend == nil {
		return nil, ErrNoBackend
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, rev: cfg.Revocations, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.cfg.Version == "" {
		h.cfg.Version = "dev"
	}
	if h.rev == nil {
		h.rev, _ = NewRevocations("")
	}
	for i, k := range cfg.APIKeys {
		if k == "" || strings.ContainsAny(k, " \t\r\n") {
			return nil, fmt.Errorf("admin: API key %d: %w", i+1, ErrBadAPIKey)
		}
		h.keys = append(h.keys, sha256.Sum256([]byte(k)))
	}
	for _, r := range []struct {
		pattern string
		fn      func(http.ResponseWriter, *http.Request)
	}{
		{"GET /v1/status", h.status},
		{"GET /v1/allocations", h.list},
		{"DELETE /v1/allocations", h.endUser},
		{"GET /v1/allocations/{id}", h.get},
		{"DELETE /v1/allocations/{id}", h.end},
		{"GET /v1/revocations", h.revocations},
		{"POST /v1/revocations", h.revoke},
		{"DELETE /v1/revocations/{username}", h.unrevoke},
		{"POST /v1/drain", h.drain},
		{"POST /v1/undrain", h.undrain},
		{"POST /v1/reload", h.reload},
		{"/", func(w http.ResponseWriter, r *http.Request) {
			fail(w, http.StatusNotFound, "no such endpoint: %s %s (see GET /v1/status, /v1/allocations, /v1/revocations)", r.Method, r.URL.Path)
		}},
	} {
		h.mux.HandleFunc(r.pattern, r.fn)
	}
	return h, nil
}

// ServeHTTP serves the API to callers that present an API key; the others get 401.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="avedge-admin"`)
		fail(w, http.StatusUnauthorized, "missing or unknown API key: send Authorization: Bearer <admin-api-key>")
		return
	}
	h.serve(w, r)
}

// Local is the API without the key check, for a Unix socket whose file mode keeps other
// users out.
func (h *Handler) Local() http.Handler { return http.HandlerFunc(h.serve) }

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	h.mux.ServeHTTP(w, r)
}

// authorized checks "Authorization: Bearer <key>" against every key, in constant time.
func (h *Handler) authorized(r *http.Request) bool {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(h.keys) == 0 {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(key)))
	match := 0
	for i := range h.keys {
		match |= subtle.ConstantTimeCompare(sum[:], h.keys[i][:])
	}
	return match == 1
}

func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	st := h.cfg.Backend.Status()
	st.Version = h.cfg.Version
	st.Revocations = h.rev.Len()
	reply(w, http.StatusOK, st)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q := Query{User: v.Get("user"), Client: v.Get("client"), Limit: DefaultLimit}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			fail(w, http.StatusBadRequest, "limit %q: want a number from 1 to %d", s, MaxLimit)
			return
		}
		q.Limit = n
	}
	if s := v.Get("cursor"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fail(w, http.StatusBadRequest, "cursor %q: pass the \"next\" of the previous page", s)
			return
		}
		q.After = n
	}
	for k := range v {
		switch k {
		case "user", "client", "limit", "cursor":
		default:
			fail(w, http.StatusBadRequest, "unknown parameter %q: filter with user= and client=, page with limit= and cursor=", k)
			return
		}
	}
	page, err := h.cfg.Backend.Allocations(q)
	if err != nil {
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	if page.Allocations == nil {
		page.Allocations = []Allocation{}
	}
	reply(w, http.StatusOK, page)
}

// allocID reads {id}; false (answered) when it is not one.
func allocID(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		fail(w, http.StatusBadRequest, "allocation id %q: want the number GET /v1/allocations lists", s)
		return 0, false
	}
	return id, true
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	id, ok := allocID(w, r)
	if !ok {
		return
	}
	a, ok := h.cfg.Backend.Allocation(id)
	if !ok {
		fail(w, http.StatusNotFound, "no live allocation %d", id)
		return
	}
	reply(w, http.StatusOK, a)
}

func (h *Handler) end(w http.ResponseWriter, r *http.Request) {
	id, ok := allocID(w, r)
	if !ok {
		return
	}
	if !h.cfg.Backend.EndAllocation(id, ReasonAdmin) {
		fail(w, http.StatusNotFound, "no live allocation %d", id)
		return
	}
	h.log.Info("admin: allocation ended", "id", id, "caller", r.RemoteAddr)
	reply(w, http.StatusOK, Ended{Ended: 1})
}

func (h *Handler) endUser(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	user := v.Get("user")
	if user == "" || len(v) != 1 {
		fail(w, http.StatusBadRequest, "give user=U to end that user's allocations (DELETE /v1/allocations/{id} ends one)")
		return
	}
	n := h.cfg.Backend.EndUser(user, ReasonAdmin)
	h.log.Info("admin: allocations of user ended", "user", user, "ended", n, "caller", r.RemoteAddr)
	reply(w, http.StatusOK, Ended{Ended: n})
}

func (h *Handler) revocations(w http.ResponseWriter, _ *http.Request) {
	list := h.rev.List()
	if list == nil {
		list = []Revocation{}
	}
	reply(w, http.StatusOK, struct {
		Revocations []Revocation `json:"revocations"`
		File        string       `json:"file,omitempty"`
	}{list, h.rev.Path()})
}

// expiryGrace keeps a revoked username's entry a while past its own expiry, beyond any
// clock skew the relay tolerates.
const expiryGrace = 10 * time.Minute

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	var req RevokeRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "body over %d bytes", maxBody)
			return
		}
		fail(w, http.StatusBadRequest, "body: want JSON {\"username\": \"...\", \"until\": RFC 3339 time (optional), \"reason\": \"...\" (optional)}: %v", err)
		return
	}
	if err := checkUsername(req.Username); err != nil {
		fail(w, http.StatusBadRequest, "username: %v", err)
		return
	}
	now := time.Now()
	if !req.Until.IsZero() && !req.Until.After(now) {
		fail(w, http.StatusBadRequest, "until %s is not in the future", req.Until.Format(time.RFC3339))
		return
	}
	e := Revocation{Username: req.Username, Until: req.Until, Created: now.UTC().Truncate(time.Second), Reason: req.Reason}
	user := req.Username
	if u, exp, ok := h.cfg.Backend.Credential(req.Username); ok {
		user = u
		if !exp.IsZero() && (e.Until.IsZero() || exp.Add(expiryGrace).Before(e.Until)) {
			e.Until = exp.Add(expiryGrace).UTC()
		}
	}
	res := RevokeResult{Revocation: e}
	if err := h.rev.Add(e); err != nil {
		res.Warning = fmt.Sprintf("revoked on this relay, but not written to the revocations file: %v", err)
		h.log.Warn("admin: revocation not persisted", "username", e.Username, "err", err)
	}
	res.Ended = h.cfg.Backend.EndUser(user, ReasonRevoked)
	h.log.Info("admin: credential revoked", "username", e.Username, "user", user, "until", e.Until, "ended", res.Ended, "caller", r.RemoteAddr)
	reply(w, http.StatusOK, res)
}

func (h *Handler) unrevoke(w http.ResponseWriter, r *http.Request) {
	u := r.PathValue("username")
	ok, err := h.rev.Remove(u)
	if !ok {
		fail(w, http.StatusNotFound, "%q is not revoked", u)
		return
	}
	res := struct {
		Lifted  string `json:"lifted"`
		Warning string `json:"warning,omitempty"`
	}{Lifted: u}
	if err != nil {
		res.Warning = fmt.Sprintf("lifted on this relay, but not written to the revocations file: %v", err)
	}
	h.log.Info("admin: revocation lifted", "username", u, "caller", r.RemoteAddr)
	reply(w, http.StatusOK, res)
}

// ApplyRevocations ends the live allocations of revocations that a re-read of the file
// added (Revocations.Reload). It returns how many ended.
func (h *Handler) ApplyRevocations(added []Revocation) int {
	n := 0
	for _, e := range added {
		user := e.Username
		if u, _, ok := h.cfg.Backend.Credential(e.Username); ok {
			user = u
		}
		n += h.cfg.Backend.EndUser(user, ReasonRevoked)
	}
	return n
}

// ReloadRevocations re-reads the revocations file and ends the live allocations of what it
// added: what SIGHUP does for revocations.
func (h *Handler) ReloadRevocations() (added, ended int, err error) {
	list, err := h.rev.Reload()
	if err != nil {
		return 0, 0, err
	}
	return len(list), h.ApplyRevocations(list), nil
}

func (h *Handler) drain(w http.ResponseWriter, r *http.Request) {
	h.cfg.Backend.Drain()
	h.log.Info("admin: drain", "caller", r.RemoteAddr)
	reply(w, http.StatusOK, h.stateOf())
}

func (h *Handler) undrain(w http.ResponseWriter, r *http.Request) {
	h.cfg.Backend.Undrain()
	h.log.Info("admin: undrain", "caller", r.RemoteAddr)
	reply(w, http.StatusOK, h.stateOf())
}

// DrainState answers POST /v1/drain and /v1/undrain.
type DrainState struct {
	Draining    bool `json:"draining"`
	Allocations int  `json:"allocations"`
}

func (h *Handler) stateOf() DrainState {
	st := h.cfg.Backend.Status()
	return DrainState{Draining: st.Draining, Allocations: st.Allocations}
}

// Reloaded answers POST /v1/reload.
type Reloaded struct {
	Reloaded    bool   `json:"reloaded"`
	Revocations int    `json:"revocations"`
	Ended       int    `json:"ended"`
	Error       string `json:"error,omitempty"`
}

func (h *Handler) reload(w http.ResponseWriter, r *http.Request) {
	h.log.Info("admin: reload", "caller", r.RemoteAddr)
	if h.cfg.Reload != nil {
		if err := h.cfg.Reload(); err != nil {
			reply(w, http.StatusUnprocessableEntity, Reloaded{Error: err.Error(), Revocations: h.rev.Len()})
			return
		}
		reply(w, http.StatusOK, Reloaded{Reloaded: true, Revocations: h.rev.Len()})
		return
	}
	_, ended, err := h.ReloadRevocations()
	if err != nil {
		reply(w, http.StatusUnprocessableEntity, Reloaded{Error: err.Error(), Revocations: h.rev.Len()})
		return
	}
	reply(w, http.StatusOK, Reloaded{Reloaded: true, Revocations: h.rev.Len(), Ended: ended})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	reply(w, code, Error{Error: fmt.Sprintf(format, args...)})
}
