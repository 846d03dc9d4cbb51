package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fixedClock is an injected clock.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

var (
	keyOld = Secret{ID: "k1", Value: []byte("old-secret-0123456789")}
	keyNew = Secret{ID: "k2", Value: []byte("new-secret-9876543210")}
	t0     = time.Unix(1_800_000_000, 0)
)

func TestValidatorLookup(t *testing.T) {
	clock := &fixedClock{t: t0}
	ring := NewKeyring(keyNew, keyOld)
	v := NewValidator(ValidatorConfig{
		Keyring: ring,
		Users:   map[string]string{"alice": "alice-pw", "1234": "digits-pw"},
		Skew:    30 * time.Second,
		Now:     clock.Now,
	})
	future := t0.Add(time.Hour)
	restUser, _ := MintREST(keyOld.Value, "bob", future)
	restBare, _ := MintREST(keyOld.Value, "", future)
	keyedOld, keyedOldPw := MintMRAS(keyOld, "sip:carol@example.org", future)
	keyedNew, keyedNewPw := MintMRAS(keyNew, "sip:dave@example.org", future)
	keyedEmpty, _ := MintMRAS(keyNew, "", future)
	// Forged: signed with the old secret but claiming the new key id.
	forged, forgedPw := MintMRAS(Secret{ID: keyNew.ID, Value: keyOld.Value}, "mallory", future)
	unknownKey, _ := MintMRAS(Secret{ID: "k9", Value: []byte("x")}, "eve", future)
	expiredREST, _ := MintREST(keyNew.Value, "bob", t0.Add(-31*time.Second))
	skewREST, _ := MintREST(keyNew.Value, "bob", t0.Add(-30*time.Second))
	expiredKeyed, _ := MintMRAS(keyNew, "carol", t0.Add(-time.Minute))
	skewKeyed, _ := MintMRAS(keyNew, "carol", t0.Add(-30*time.Second))

	tests := []struct {
		name      string
		username  string
		wantErr   error
		wantUser  string
		wantKeys  []string
		wantPw    []string // checked when set
		notPw     string   // must not be among the candidates
		wantExpir time.Time
	}{
		{name: "static user", username: "alice", wantUser: "alice", wantKeys: []string{""}, wantPw: []string{"alice-pw"}},
		{name: "static user shadows REST shape", username: "1234", wantUser: "1234", wantKeys: []string{""}, wantPw: []string{"digits-pw"}},
		{name: "unknown static user", username: "zoe", wantErr: ErrUnknownUser},
		{name: "REST two secrets two candidates", username: restUser, wantUser: "bob", wantKeys: []string{"k2", "k1"},
			wantPw: []string{RESTPassword(keyNew.Value, restUser), RESTPassword(keyOld.Value, restUser)}, wantExpir: future},
		{name: "REST empty user", username: restBare, wantUser: restBare, wantKeys: []string{"k2", "k1"}, wantExpir: future},
		{name: "keyed old key exactly one", username: keyedOld, wantUser: "sip:carol@example.org", wantKeys: []string{"k1"}, wantPw: []string{keyedOldPw}, wantExpir: future},
		{name: "keyed new key exactly one", username: keyedNew, wantUser: "sip:dave@example.org", wantKeys: []string{"k2"}, wantPw: []string{keyedNewPw}},
		{name: "keyed empty identity", username: keyedEmpty, wantUser: keyedEmpty, wantKeys: []string{"k2"}},
		{name: "forged key id yields the real key's password", username: forged, wantUser: "mallory", wantKeys: []string{"k2"}, notPw: forgedPw},
		{name: "keyed unknown key", username: unknownKey, wantErr: ErrUnknownKey},
		{name: "REST expired beyond skew", username: expiredREST, wantErr: ErrExpired},
		{name: "REST at skew edge", username: skewREST, wantUser: "bob", wantKeys: []string{"k2", "k1"}},
		{name: "keyed expired", username: expiredKeyed, wantErr: ErrExpired},
		{name: "keyed at skew edge", username: skewKeyed, wantUser: "carol", wantKeys: []string{"k2"}},
		// Malformed shapes.
		{name: "empty", username: "", wantErr: ErrMalformed},
		{name: "too long", username: strings.Repeat("a", MaxUsernameLen+1), wantErr: ErrMalformed},
		{name: "invalid utf8", username: "ab\xffcd", wantErr: ErrMalformed},
		{name: "control char", username: "alice\x00", wantErr: ErrMalformed},
		{name: "C1 control", username: "alice\u0085", wantErr: ErrMalformed},
		{name: "REST non-digit expiry", username: "12a4:bob", wantErr: ErrMalformed},
		{name: "REST expiry overflow", username: "99999999999999999999:bob", wantErr: ErrMalformed},
		{name: "REST signed expiry", username: "1+2:bob", wantErr: ErrMalformed},
		{name: "keyed missing parts", username: "mras1:k2", wantErr: ErrMalformed},
		{name: "keyed missing identity sep", username: "mras1:k2:1800003600", wantErr: ErrMalformed},
		{name: "keyed bad key id", username: "mras1:k.2:1800003600:YWxpY2U", wantErr: ErrMalformed},
		{name: "keyed long key id", username: "mras1:abcdefghijklmnopq:1800003600:YWxpY2U", wantErr: ErrMalformed},
		{name: "keyed empty key id", username: "mras1::1800003600:YWxpY2U", wantErr: ErrMalformed},
		{name: "keyed leading zero expiry", username: "mras1:k2:01800003600:YWxpY2U", wantErr: ErrMalformed},
		{name: "keyed negative expiry", username: "mras1:k2:-1:YWxpY2U", wantErr: ErrMalformed},
		{name: "keyed padded base64", username: "mras1:k2:1800003600:YWxpY2U=", wantErr: ErrMalformed},
		{name: "keyed std base64 alphabet", username: "mras1:k2:1800003600:+/+/", wantErr: ErrMalformed},
		{name: "keyed non-canonical base64", username: "mras1:k2:1800003600:YWxpY2V", wantErr: ErrMalformed},
		{name: "keyed identity with control", username: "mras1:k2:1800003600:AA", wantErr: ErrMalformed},
		{name: "keyed extra field", username: "mras1:k2:1800003600:YWxpY2U:x", wantErr: ErrMalformed},
		{name: "keyed wrong version", username: "mras2:k2:1800003600:YWxpY2U", wantErr: ErrUnknownUser},
		{name: "keyed uppercase prefix", username: "MRAS1:k2:1800003600:YWxpY2U", wantErr: ErrUnknownUser},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Lookup(tt.username)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Lookup(%q) err = %v, want %v", tt.username, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup(%q): %v", tt.username, err)
			}
			if c.UserID != tt.wantUser {
				t.Errorf("UserID = %q, want %q", c.UserID, tt.wantUser)
			}
			if strings.Join(c.KeyIDs, ",") != strings.Join(tt.wantKeys, ",") {
				t.Errorf("KeyIDs = %q, want %q", c.KeyIDs, tt.wantKeys)
			}
			if len(c.Passwords) != len(c.KeyIDs) {
				t.Errorf("%d passwords for %d key ids", len(c.Passwords), len(c.KeyIDs))
			}
			if tt.wantPw != nil && strings.Join(c.Passwords, ",") != strings.Join(tt.wantPw, ",") {
				t.Errorf("Passwords = %q, want %q", c.Passwords, tt.wantPw)
			}
			for _, p := range c.Passwords {
				if tt.notPw != "" && p == tt.notPw {
					t.Errorf("forged password %q accepted as a candidate", p)
				}
			}
			if !tt.wantExpir.IsZero() && !c.Expiry.Equal(tt.wantExpir) {
				t.Errorf("Expiry = %v, want %v", c.Expiry, tt.wantExpir)
			}
		})
	}
}

// TestValidatorRotation walks a key rotation: new key first with the old one
// still listed, then the old one removed.
func TestValidatorRotation(t *testing.T) {
	clock := &fixedClock{t: t0}
	ring := NewKeyring(keyOld)
	v := NewValidator(ValidatorConfig{Keyring: ring, Now: clock.Now})
	exp := t0.Add(time.Hour)
	restName, restPw := MintREST(keyOld.Value, "bob", exp)
	keyedName, keyedPw := MintMRAS(keyOld, "carol", exp)

	has := func(c Credential, pw string) bool {
		for _, p := range c.Passwords {
			if p == pw {
				return true
			}
		}
		return false
	}

	steps := []struct {
		name    string
		secrets []Secret
		restOK  bool
		keyedOK bool
		keyErr  error
	}{
		{name: "old only", secrets: []Secret{keyOld}, restOK: true, keyedOK: true},
		{name: "new first old listed", secrets: []Secret{keyNew, keyOld}, restOK: true, keyedOK: true},
		{name: "old removed", secrets: []Secret{keyNew}, restOK: false, keyErr: ErrUnknownKey},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			ring.Set(st.secrets)
			c, err := v.Lookup(restName)
			if err != nil {
				t.Fatalf("REST lookup: %v", err)
			}
			if len(c.Passwords) != len(st.secrets) {
				t.Errorf("REST: %d candidates, want %d", len(c.Passwords), len(st.secrets))
			}
			if has(c, restPw) != st.restOK {
				t.Errorf("REST old credential accepted = %v, want %v", !st.restOK, st.restOK)
			}
			k, err := v.Lookup(keyedName)
			if st.keyErr != nil {
				if !errors.Is(err, st.keyErr) {
					t.Fatalf("keyed err = %v, want %v", err, st.keyErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("keyed lookup: %v", err)
			}
			if len(k.Passwords) != 1 || has(k, keyedPw) != st.keyedOK {
				t.Errorf("keyed candidates %q, want exactly the old key's", k.KeyIDs)
			}
		})
	}
	// A credential minted with the new key validates against it alone.
	newName, newPw := MintMRAS(keyNew, "carol", exp)
	if c, err := v.Lookup(newName); err != nil || len(c.Passwords) != 1 || c.Passwords[0] != newPw {
		t.Fatalf("new keyed credential: %v %v", c, err)
	}
}

func TestValidatorNoKeyring(t *testing.T) {
	v := NewValidator(ValidatorConfig{Users: map[string]string{"alice": "pw"}})
	name, _ := MintREST([]byte("s"), "bob", time.Now().Add(time.Hour))
	if _, err := v.Lookup(name); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("REST without keyring: err = %v, want ErrUnknownKey", err)
	}
	keyed, _ := MintMRAS(keyNew, "bob", time.Now().Add(time.Hour))
	if _, err := v.Lookup(keyed); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("keyed without keyring: err = %v, want ErrUnknownKey", err)
	}
	v.SetUsers(map[string]string{"zoe": "pw2"})
	if _, err := v.Lookup("alice"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("after SetUsers, alice: err = %v", err)
	}
	if c, err := v.Lookup("zoe"); err != nil || c.Passwords[0] != "pw2" {
		t.Fatalf("after SetUsers, zoe: %v %v", c, err)
	}
	v.SetUsers(nil)
	if _, err := v.Lookup("zoe"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("after SetUsers(nil), zoe: err = %v", err)
	}
}

func TestValidatorSeparator(t *testing.T) {
	clock := &fixedClock{t: t0}
	v := NewValidator(ValidatorConfig{Keyring: NewKeyring(keyOld), Separator: "-", Now: clock.Now})
	name, pw := MintRESTSep(keyOld.Value, "bob:x", t0.Add(time.Minute), "-")
	c, err := v.Lookup(name)
	if err != nil || c.UserID != "bob:x" || c.Passwords[0] != pw {
		t.Fatalf("Lookup(%q) = %+v, %v", name, c, err)
	}
	if _, err := v.Lookup("1800000060:bob"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("colon-separated name with '-' separator: err = %v, want ErrMalformed", err)
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{ErrExpired, "expired"},
		{ErrMalformed, "malformed"},
		{ErrUnknownKey, "unknown_key"},
		{ErrUnknownUser, "unknown_user"},
		{errors.New("boom"), "other"},
		{nil, "other"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := Reason(wrap(tt.err)); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return errors.Join(errors.New("context"), err)
}

func TestMintMRASRoundTrip(t *testing.T) {
	v := NewValidator(ValidatorConfig{Keyring: NewKeyring(keyNew), Now: (&fixedClock{t: t0}).Now})
	ids := []string{"a", "sip:user@example.com", "ünïcödé 東京", strings.Repeat("x", MaxIdentityLen)}
	for _, id := range ids {
		t.Run(id[:min(len(id), 20)], func(t *testing.T) {
			name, pw := MintMRAS(keyNew, id, t0.Add(8*time.Hour))
			if len(name) > MaxUsernameLen {
				t.Fatalf("username of %d bytes", len(name))
			}
			c, err := v.Lookup(name)
			if err != nil || c.UserID != id || c.Passwords[0] != pw || !c.Expiry.Equal(t0.Add(8*time.Hour)) {
				t.Fatalf("Lookup(%q) = %+v, %v", name, c, err)
			}
		})
	}
	// Over-long identity: minted, but rejected as malformed.
	name, _ := MintMRAS(keyNew, strings.Repeat("x", MaxIdentityLen+1), t0.Add(time.Hour))
	if _, err := v.Lookup(name); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over-long identity: err = %v", err)
	}
}

func BenchmarkLookupKeyed(b *testing.B) {
	v := NewValidator(ValidatorConfig{Keyring: NewKeyring(keyNew, keyOld), Now: (&fixedClock{t: t0}).Now})
	name, _ := MintMRAS(keyNew, "sip:user@example.com", t0.Add(time.Hour))
	b.ReportAllocs()
	b.SetBytes(int64(len(name)))
	for b.Loop() {
		if _, err := v.Lookup(name); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupREST(b *testing.B) {
	v := NewValidator(ValidatorConfig{Keyring: NewKeyring(keyNew, keyOld), Now: (&fixedClock{t: t0}).Now})
	name, _ := MintREST(keyNew.Value, "user", t0.Add(time.Hour))
	b.ReportAllocs()
	b.SetBytes(int64(len(name)))
	for b.Loop() {
		if _, err := v.Lookup(name); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLongTermKey(t *testing.T) {
	// printf '%s' 'user:realm:pass' | openssl dgst -md5
	// MD5("user:realm:pass") = 8493fbc53ba582fb4c044c456bdc40eb
	got := fmt.Sprintf("%x", LongTermKey("user", "realm", "pass"))
	if got != "8493fbc53ba582fb4c044c456bdc40eb" {
		t.Fatalf("LongTermKey = %s", got)
	}
	c := Credential{Passwords: []string{"pass", "other"}}
	keys := c.Keys("user", "realm")
	if len(keys) != 2 || fmt.Sprintf("%x", keys[0]) != got || fmt.Sprintf("%x", keys[1]) == got {
		t.Fatalf("Keys = %x", keys)
	}
}
