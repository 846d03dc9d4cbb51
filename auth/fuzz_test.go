package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzLookup feeds arbitrary usernames to the validator: it must never
// panic, must answer with one of the sentinels, and whatever it accepts must
// respect the bounds and the shape of a credential.
func FuzzLookup(f *testing.F) {
	clock := &fixedClock{t: t0}
	v := NewValidator(ValidatorConfig{
		Keyring: NewKeyring(keyNew, keyOld),
		Users:   map[string]string{"alice": "pw"},
		Skew:    DefaultSkew,
		Now:     clock.Now,
	})
	good, _ := MintMRAS(keyNew, "sip:a@b", t0.Add(time.Hour))
	rest, _ := MintREST(keyNew.Value, "bob", t0.Add(time.Hour))
	for _, s := range []string{good, rest, "alice", "", "mras1:", "mras1:k2:1:", "1800000000", "1800000000:", "mras1:k2:01:YQ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, username string) {
		c, err := v.Lookup(username)
		if err != nil {
			if Reason(err) == ReasonOther {
				t.Fatalf("Lookup(%q): error %v maps to no reason", username, err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrUnknownUser) {
				t.Fatalf("Lookup(%q): unexpected error %v", username, err)
			}
			return
		}
		if len(username) > MaxUsernameLen || len(c.Passwords) == 0 || len(c.Passwords) != len(c.KeyIDs) {
			t.Fatalf("Lookup(%q) accepted %+v", username, c)
		}
		if strings.HasPrefix(username, keyedPrefix) {
			if len(c.Passwords) != 1 {
				t.Fatalf("keyed username %q with %d candidates", username, len(c.Passwords))
			}
			// A keyed username that parses must re-mint to itself.
			sec, _ := v.Keyring().ByID(c.KeyIDs[0])
			id := c.UserID
			if id == username {
				id = ""
			}
			if again, _ := MintMRAS(sec, id, c.Expiry); again != username {
				t.Fatalf("keyed username %q is not canonical: re-minted %q", username, again)
			}
		}
	})
}

// FuzzParseMRASRequest feeds arbitrary bytes to the MRAS request parser: it
// must never panic, every error must wrap one of its sentinels, and every
// accepted request must respect the documented bounds.
func FuzzParseMRASRequest(f *testing.F) {
	f.Add([]byte(`<request xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" requestID="1" version="2.0" to="sip:a@b" from="sip:c@d"><credentialsRequest credentialsRequestID="1"><identity>sip:c@d</identity><location>internet</location><duration>60</duration></credentialsRequest></request>`))
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><request/>`))
	f.Add([]byte(`<m:request xmlns:m="http://schemas.microsoft.com/2006/09/sip/mrasp" requestID="1" version="9.0" to="a" from="b"/>`))
	f.Add([]byte(`<request xmlns="http://schemas.microsoft.com/2006/09/sip/mrasp" requestID="1" version="1.0" to="a" from="b"><credentialsRequest credentialsRequestID="x"><identity>&amp;&lt;</identity></credentialsRequest></request>trailing`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseMRASRequest(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrMRASMalformed) && !errors.Is(err, ErrMRASTooLarge) && !errors.Is(err, ErrMRASVersion) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if len(req.Requests) == 0 || len(req.Requests) > MaxCredentialsRequests || req.RequestID == "" || len(req.RequestID) > maxAttrLen {
			t.Fatalf("accepted request out of bounds: %+v", req)
		}
		for _, cr := range req.Requests {
			if cr.ID == "" || cr.Identity == "" || cr.Duration < 0 || (cr.Location != "" && cr.Location != LocationInternet && cr.Location != LocationIntranet) {
				t.Fatalf("accepted credentialsRequest out of bounds: %+v", cr)
			}
		}
	})
}
