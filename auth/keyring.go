package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
)

// Secret is one shared secret between the credential service and the relays.
type Secret struct {
	// ID names the key inside keyed (MRAS) usernames: [A-Za-z0-9_-]{1,16}.
	ID string
	// Value is the secret itself, used as the HMAC key (the bytes of coturn's
	// static-auth-secret string).
	Value []byte
}

// maxKeyIDLen bounds Secret.ID.
const maxKeyIDLen = 16

// validKeyID reports whether id matches [A-Za-z0-9_-]{1,16}.
func validKeyID(id string) bool {
	if len(id) == 0 || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// DefaultKeyID is the id given to a secret listed without one: "h" followed by
// the first 8 hex digits of SHA-256(value). It is stable across reloads and
// relays, so keyed usernames keep validating when the file is re-read.
func DefaultKeyID(value []byte) string {
	sum := sha256.Sum256(value)
	return "h" + hex.EncodeToString(sum[:4])
}

// ValidateSecrets checks that every secret has a valid, unique ID and a
// non-empty value.
func ValidateSecrets(secrets []Secret) error {
	seen := make(map[string]struct{}, len(secrets))
	for i, s := range secrets {
		if !validKeyID(s.ID) {
			return fmt.Errorf("auth: secret %d: key id %q: %w", i, s.ID, ErrBadKeyID)
		}
		if len(s.Value) == 0 {
			return fmt.Errorf("auth: secret %d (%s): %w", i, s.ID, ErrEmptySecret)
		}
		if _, dup := seen[s.ID]; dup {
			return fmt.Errorf("auth: secret %d: key id %q: %w", i, s.ID, ErrDuplicateKeyID)
		}
		seen[s.ID] = struct{}{}
	}
	return nil
}

// Keyring holds the live secrets, newest first. It is safe for concurrent use:
// readers load an immutable slice through an atomic pointer and never wait for
// a writer; Set swaps the whole slice at once.
type Keyring struct {
	secrets atomic.Pointer[[]Secret] // immutable once stored
}

// NewKeyring returns a keyring holding secrets, newest first.
func NewKeyring(secrets ...Secret) *Keyring {
	k := &Keyring{}
	k.Set(secrets)
	return k
}

// Set replaces the live secrets (newest first) atomically. The slice and the
// values are copied, so the caller may reuse them. Set does not check them:
// LoadSecretsFile does, and ValidateSecrets does for other sources.
func (k *Keyring) Set(secrets []Secret) {
	cp := make([]Secret, len(secrets))
	for i, s := range secrets {
		cp[i] = Secret{ID: s.ID, Value: bytes.Clone(s.Value)}
	}
	k.secrets.Store(&cp)
}

// Secrets returns the live secrets, newest first. Callers must not modify the
// returned slice or the values in it.
func (k *Keyring) Secrets() []Secret {
	if k == nil {
		return nil
	}
	p := k.secrets.Load()
	if p == nil {
		return nil
	}
	return *p
}

// Newest returns the newest live secret, the one to mint with.
func (k *Keyring) Newest() (Secret, bool) {
	s := k.Secrets()
	if len(s) == 0 {
		return Secret{}, false
	}
	return s[0], true
}

// ByID returns the live secret with the given id.
func (k *Keyring) ByID(id string) (Secret, bool) {
	for _, s := range k.Secrets() {
		if s.ID == id {
			return s, true
		}
	}
	return Secret{}, false
}

// LoadFile re-reads a secrets file (see LoadSecretsFile) and swaps it in. On
// error the keyring keeps its current secrets. This is what a reload (SIGHUP)
// calls.
func (k *Keyring) LoadFile(path string) error {
	secrets, err := LoadSecretsFile(path)
	if err != nil {
		return err
	}
	k.Set(secrets)
	return nil
}

// maxFileBytes bounds the secrets and users files: they are small by nature.
const maxFileBytes = 1 << 20

// readLines reads a small config file and calls fn for each non-blank,
// non-comment line with its 1-based number, trimmed of surrounding space.
func readLines(path string, fn func(lineNo int, line string) error) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if len(data) > maxFileBytes {
		return fmt.Errorf("auth: %s: %w", path, ErrFileTooLarge)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxFileBytes)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("auth: %s:%d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("auth: %s: %w", path, err)
	}
	return nil
}

// LoadSecretsFile parses a secrets file: one secret per line, newest first,
// either "id secret" or just "secret" (the id then defaults to DefaultKeyID of
// the value). Lines starting with '#' and blank lines are ignored. Secrets may
// not contain white space. Errors name file:line. An empty file is an error:
// a keyring with no secret accepts nothing.
func LoadSecretsFile(path string) ([]Secret, error) {
	var secrets []Secret
	seen := make(map[string]int)
	err := readLines(path, func(n int, line string) error {
		fields := strings.Fields(line)
		var s Secret
		switch len(fields) {
		case 1:
			s = Secret{ID: DefaultKeyID([]byte(fields[0])), Value: []byte(fields[0])}
		case 2:
			if !validKeyID(fields[0]) {
				return fmt.Errorf("key id %q: %w", fields[0], ErrBadKeyID)
			}
			s = Secret{ID: fields[0], Value: []byte(fields[1])}
		default:
			return fmt.Errorf("want \"id secret\" or \"secret\", got %d fields: %w", len(fields), ErrBadLine)
		}
		if prev, dup := seen[s.ID]; dup {
			return fmt.Errorf("key id %q already on line %d: %w", s.ID, prev, ErrDuplicateKeyID)
		}
		seen[s.ID] = n
		secrets = append(secrets, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(secrets) == 0 {
		return nil, fmt.Errorf("auth: %s: %w", path, ErrNoSecrets)
	}
	return secrets, nil
}

// LoadUsersFile parses static long-term users, one "name:password" per line
// (coturn's user=name:pw shape; a leading "user=" is accepted). The name may
// not contain ':'; the password is everything after the first ':'. '#'
// comments and blank lines are ignored; errors name file:line.
func LoadUsersFile(path string) (map[string]string, error) {
	users := make(map[string]string)
	err := readLines(path, func(_ int, line string) error {
		line = strings.TrimPrefix(line, "user=")
		name, pw, ok := strings.Cut(line, ":")
		if !ok || name == "" || pw == "" {
			return fmt.Errorf("want \"name:password\": %w", ErrBadLine)
		}
		if !validUsername(name) {
			return fmt.Errorf("user name %q: %w", name, ErrMalformed)
		}
		if _, dup := users[name]; dup {
			return fmt.Errorf("user %q listed twice: %w", name, ErrBadLine)
		}
		users[name] = pw
		return nil
	})
	if err != nil {
		return nil, err
	}
	return users, nil
}
