package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Revocations is the set of refused credentials. The relay's AuthHandler asks Refused on
// every authenticated request, lock-free (an atomic load, then at most two map reads, none
// when the set is empty); the API adds and lifts entries, and Reload re-reads the file.
//
// The file (revocations-file) is JSON, {"revocations": [Revocation, ...]}: the relay writes
// it on every change (a new file renamed over the old one), and re-reads it on SIGHUP and
// POST /v1/reload, so that a pool of relays can share one (a Kubernetes ConfigMap, a file on
// shared storage): whoever edits it, every relay that re-reads it refuses the same
// credentials. When the file cannot be written (a read-only ConfigMap), a revocation made
// through the API still applies on this relay, and the answer says it was not persisted.
type Revocations struct {
	path string           // "": kept in memory only. Static.
	now  func() time.Time // Static.

	mu  sync.Mutex                            // serialises writers (Add, Remove, Reload) and the file
	set atomic.Pointer[map[string]Revocation] // by Username; the map is never changed once stored
}

// NewRevocations reads path (a missing file is an empty list; "" keeps the list in memory).
func NewRevocations(path string) (*Revocations, error) {
	r := &Revocations{path: path, now: time.Now}
	empty := map[string]Revocation{}
	r.set.Store(&empty)
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Path is the file the list is kept in ("" when none).
func (r *Revocations) Path() string { return r.path }

// Refused reports whether a credential is revoked: username as the client sent it, user the
// user it names (auth.Credential.UserID). Either may be listed.
func (r *Revocations) Refused(username, user string, now time.Time) bool {
	set := *r.set.Load()
	if len(set) == 0 {
		return false
	}
	for _, k := range [2]string{username, user} {
		if e, ok := set[k]; ok && (e.Until.IsZero() || now.Before(e.Until)) {
			return true
		}
	}
	return false
}

// List returns the revocations in force, by username.
func (r *Revocations) List() []Revocation {
	now := r.now()
	var out []Revocation
	for _, e := range *r.set.Load() {
		if e.Until.IsZero() || now.Before(e.Until) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Revocation) int { return strings.Compare(a.Username, b.Username) })
	return out
}

// Len is the number of revocations in force.
func (r *Revocations) Len() int { return len(r.List()) }

// Add revokes e.Username (replacing an entry of the same username) and writes the file. The
// revocation applies even when the file cannot be written; the error says so.
func (r *Revocations) Add(e Revocation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.pruned()
	next[e.Username] = e
	r.set.Store(&next)
	return r.saveLocked(next)
}

// Remove lifts the revocation of username; false if there was none.
func (r *Revocations) Remove(username string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.pruned()
	if _, ok := next[username]; !ok {
		return false, nil
	}
	delete(next, username)
	r.set.Store(&next)
	return true, r.saveLocked(next)
}

// Reload re-reads the file and returns the revocations it has that were not in force before
// (their live allocations are to end). A file that does not parse is refused with the
// list kept as it was; a missing file is an empty list.
func (r *Revocations) Reload() (added []Revocation, err error) {
	if r.path == "" {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("admin: revocations file: %w", err)
	}
	list, err := parseRevocations(b)
	if err != nil {
		return nil, fmt.Errorf("admin: revocations file %s: %w", r.path, err)
	}
	old := *r.set.Load()
	now := r.now()
	next := make(map[string]Revocation, len(list))
	for _, e := range list {
		if !e.Until.IsZero() && !now.Before(e.Until) {
			continue
		}
		next[e.Username] = e
		if _, had := old[e.Username]; !had {
			added = append(added, e)
		}
	}
	r.set.Store(&next)
	return added, nil
}

// parseRevocations reads the file's JSON; an empty file is an empty list.
func parseRevocations(b []byte) ([]Revocation, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	var f revocationsFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRevocations, err)
	}
	for i, e := range f.Revocations {
		if err := checkUsername(e.Username); err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrBadRevocations, i+1, err)
		}
	}
	return f.Revocations, nil
}

type revocationsFile struct {
	Revocations []Revocation `json:"revocations"`
}

// pruned is a copy of the set without the lapsed entries.
func (r *Revocations) pruned() map[string]Revocation {
	now := r.now()
	cur := *r.set.Load()
	next := make(map[string]Revocation, len(cur)+1)
	for k, e := range cur {
		if e.Until.IsZero() || now.Before(e.Until) {
			next[k] = e
		}
	}
	return next
}

// saveLocked writes set to the file: a new file in the same directory, renamed over the old
// one, so that a relay re-reading it never sees half of it.
func (r *Revocations) saveLocked(set map[string]Revocation) error {
	if r.path == "" {
		return nil
	}
	f := revocationsFile{Revocations: make([]Revocation, 0, len(set))}
	for _, e := range set {
		f.Revocations = append(f.Revocations, e)
	}
	slices.SortFunc(f.Revocations, func(a, b Revocation) int { return strings.Compare(a.Username, b.Username) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(r.path), ".revocations-*")
	if err != nil {
		return fmt.Errorf("admin: write revocations file: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), r.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("admin: write revocations file: %w", err)
	}
	return nil
}

// maxUsername bounds a username (pion refuses longer ones: STUN's USERNAME is at most 513
// bytes).
const maxUsername = 513

func checkUsername(u string) error {
	switch {
	case u == "":
		return errors.New("username is empty")
	case len(u) > maxUsername:
		return fmt.Errorf("username of %d bytes: at most %d", len(u), maxUsername)
	case strings.ContainsFunc(u, func(c rune) bool { return c < 0x20 || c == 0x7f }):
		return errors.New("username has control characters")
	}
	return nil
}
