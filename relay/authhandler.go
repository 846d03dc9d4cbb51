//go:build linux

package relay

import (
	"net"
	"sync"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
)

// authenticate is pion's AuthHandler: it looks the username up (expiry, key id, static user)
// and returns the long-term key, MD5(username ":" realm ":" password) (RFC 8489 §9.2.2),
// that pion checks MESSAGE-INTEGRITY with. Unknown, expired and malformed usernames get 401
// with a fresh nonce from pion and are counted by reason; they never reach an allocation.
func (s *Server) authenticate(ra *turn.RequestAttributes) (string, []byte, bool) {
	cred, err := s.cfg.Validator.Lookup(ra.Username)
	if err != nil {
		reason := auth.Reason(err)
		if m := s.cfg.Metrics; m != nil {
			m.AuthFailure(reason)
			if ra.Method == stun.MethodAllocate {
				m.AllocationAttempt("auth")
			}
		}
		s.log.Info("authentication failed", "client", ra.SrcAddr.String(), "method", ra.Method.String(), "reason", reason)
		return "", nil, false
	}
	pw := cred.Passwords[0]
	if len(cred.Passwords) > 1 {
		if i, ok := s.precheck.take(ra.SrcAddr, ra.Username); ok && i < len(cred.Passwords) {
			pw = cred.Passwords[i]
		}
	}
	key := turn.GenerateAuthKey(ra.Username, ra.Realm, pw)
	if ra.Method == stun.MethodChannelBind {
		s.bindKeys.put(ra.SrcAddr, key)
	}
	return cred.UserID, key, true
}

// keyCache remembers the long-term key of the ChannelBind request pion is handling, per
// client address, for fixChannelBindRefusal. pion handles a client's requests in order.
type keyCache struct {
	mu sync.Mutex
	m  map[string][]byte // Guarded by mu.
}

func (k *keyCache) put(src net.Addr, key []byte) {
	k.mu.Lock()
	if k.m == nil || len(k.m) > 4096 {
		k.m = map[string][]byte{}
	}
	k.m[src.String()] = key
	k.mu.Unlock()
}

func (k *keyCache) take(dst net.Addr) []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := k.m[dst.String()]
	delete(k.m, dst.String())
	return key
}

// fixChannelBindRefusal corrects pion's answer to a ChannelBind whose peer the policy refused.
//
// RFC 8656 §12.2: "If the server ... determines that the peer is not allowed, it rejects the
// request with a 403 (Forbidden) error." pion v5 answers 401 instead (with
// MESSAGE-INTEGRITY, which its 401s for missing or bad credentials never carry, so the two are
// told apart exactly). The answer is rebuilt as 403 and signed with the same key.
func (s *Server) fixChannelBindRefusal(b []byte, dst net.Addr) []byte {
	if len(b) < 20 || b[0] != 0x01 || b[1] != 0x19 || stunErrorCode(b) != 401 {
		return b
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return b
	}
	key := s.bindKeys.take(dst)
	if key == nil {
		return b
	}
	out, err := stun.Build(&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeForbidden},
		stun.MessageIntegrity(key), stun.Fingerprint)
	if err != nil {
		return b
	}
	return out.Raw
}

// precheckCache resolves which of several live shared secrets a plain TURN REST username was
// signed with. pion's AuthHandler returns one key and cannot try several, so while keys
// rotate (a new secret first, the old one still listed) the listener facade checks the
// request's MESSAGE-INTEGRITY against each candidate just before pion reads it, and leaves
// the index here for authenticate. pion handles one listener's requests in order on one
// goroutine, so the entry is taken by the very request that left it.
type precheckCache struct {
	mu sync.Mutex
	m  map[string]int // src|username → password index. Guarded by mu.
}

func (p *precheckCache) init() { p.m = map[string]int{} }

func (p *precheckCache) put(src net.Addr, username string, i int) {
	p.mu.Lock()
	if len(p.m) > 4096 { // bounded: entries are taken right away; stale ones are dropped
		clear(p.m)
	}
	p.m[src.String()+"|"+username] = i
	p.mu.Unlock()
}

func (p *precheckCache) take(src net.Addr, username string) (int, bool) {
	k := src.String() + "|" + username
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.m[k]
	delete(p.m, k)
	return i, ok
}

// checkRotation is called by a listener facade for every STUN message before pion sees it.
// It costs nothing unless more than one secret is live and the message carries
// MESSAGE-INTEGRITY.
func (s *Server) checkRotation(raw []byte, src net.Addr) {
	v := s.cfg.Validator
	if v == nil || v.Keyring() == nil || len(v.Keyring().Secrets()) < 2 {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return
	}
	var u stun.Username
	var r stun.Realm
	if u.GetFrom(m) != nil || r.GetFrom(m) != nil {
		return
	}
	cred, err := v.Lookup(u.String())
	if err != nil || len(cred.Passwords) < 2 {
		return
	}
	for i, pw := range cred.Passwords {
		key := turn.GenerateAuthKey(u.String(), r.String(), pw)
		if stun.MessageIntegrity(key).Check(m) == nil {
			s.precheck.put(src, u.String(), i)
			return
		}
	}
}
