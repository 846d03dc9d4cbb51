//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
)

// 437 (Allocation Mismatch) for a Refresh on an allocation the admin API or a revocation
// ended. RFC 8656 §7.3: "If the server receives a Refresh request ... and there is no
// allocation for the 5-tuple, the server MUST reject the request with a 437 (Allocation
// Mismatch) error"; pion v5 (internal/server/turn.go, handleRefreshRequest) sends nothing
// when GetAllocationForUserID finds none, so a kicked client waited out its retransmissions
// and did not know to allocate again. The relay answers it before pion reads it, for the
// 5-tuples of allocations it ended on an operator's word (endedTuples), with credentials
// that verify: signed with the request's key, as pion signs the errors it answers after
// authentication. A request whose credentials fail (a revoked user's among them), or whose
// nonce is stale, goes on to pion, which answers 401 or 438 as for any other request. A
// 5-tuple that has a live allocation again (the client allocated anew) goes to pion too.
// Refreshes of 5-tuples that never had an allocation, or whose allocation expired, keep
// pion's silence: nothing tells them apart from a spoofed source, and the relay keeps no
// record of every expiry.

// endedTuples remembers the 5-tuples of allocations ended by the admin API or a
// revocation: two generations of at most endedGeneration entries each, the older dropped
// when the newer fills (bounded, O(1); an operator ends allocations rarely).
type endedTuples struct {
	mu        sync.Mutex
	cur, prev map[allocKey]struct{} // Guarded by mu.
	any       atomic.Bool           // something was ever noted: else admitRequest looks no further
}

const endedGeneration = 1 << 14

// noteEnded records k, whose allocation just ended, if an operator ended it.
func (s *Server) noteEnded(k allocKey, reason endReason) {
	if reason == endNormal {
		return
	}
	e := &s.ended
	e.mu.Lock()
	if len(e.cur) >= endedGeneration || e.cur == nil {
		e.prev, e.cur = e.cur, make(map[allocKey]struct{})
	}
	e.cur[k] = struct{}{}
	e.mu.Unlock()
	e.any.Store(true)
}

func (e *endedTuples) has(k allocKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, a := e.cur[k]
	_, b := e.prev[k]
	return a || b
}

var refreshRequest = stun.NewType(stun.MethodRefresh, stun.ClassRequest).Value()

// answerMismatch answers m, a request from client (src as pion sees it) over r, with 437
// and reports true if it is a Refresh for a 5-tuple whose allocation an operator ended and
// its credentials verify (see above). admitRequest calls it after the nonce check
// (bindRequestNonce), which has left m signed for pion's nonce if its own was valid.
func (s *Server) answerMismatch(m []byte, client netip.AddrPort, src net.Addr, r replier) bool {
	if !s.ended.any.Load() || len(m) < stunHeaderSize || binary.BigEndian.Uint16(m[0:2]) != refreshRequest {
		return false
	}
	from, ok := sock.AddrPortOf(src)
	if !ok {
		return false
	}
	_, local := r.tupleEnd()
	k := allocKey{src: from, dst: local}
	if !s.ended.has(k) {
		return false
	}
	s.mu.Lock()
	live := s.allocs[k] != nil || s.tcpAllocs[k] != nil
	s.mu.Unlock()
	if live {
		return false
	}
	req := &stun.Message{Raw: append([]byte(nil), m...)}
	if req.Decode() != nil {
		return false
	}
	key := s.verifiedKey(req)
	if key == nil {
		return false // pion answers: 401, 438 or 400
	}
	if lim := s.errLimit; lim != nil && !lim.Allow(client.Addr(), time.Now().UnixNano()) {
		s.slowStats.Drop(dataplane.DropRateLimited)
		return true
	}
	resp, err := stun.Build(&stun.Message{TransactionID: req.TransactionID},
		stun.NewType(stun.MethodRefresh, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeAllocMismatch},
		stun.MessageIntegrity(key), stun.Fingerprint)
	if err != nil {
		return false
	}
	r.reply(client, resp.Raw)
	return true
}

// verifiedKey returns the long-term key req's MESSAGE-INTEGRITY verifies with, if its
// username is one the relay accepts now (known, not expired, not revoked, not a locked-out
// static user); nil otherwise. It counts nothing: pion, which gets the request when this
// returns nil, does the counting through authenticate.
func (s *Server) verifiedKey(req *stun.Message) []byte {
	v := s.cfg.Validator
	if v == nil || !req.Contains(stun.AttrMessageIntegrity) {
		return nil
	}
	var u stun.Username
	var realm stun.Realm
	if u.GetFrom(req) != nil || realm.GetFrom(req) != nil {
		return nil
	}
	cred, err := v.Lookup(u.String())
	if err != nil || s.revokedCredential(u.String(), cred.UserID) {
		return nil
	}
	if isStaticUser(cred) && s.lockout.Locked(u.String(), time.Now().UnixNano()) {
		return nil
	}
	for _, pw := range cred.Passwords {
		key := turn.GenerateAuthKey(u.String(), realm.String(), pw)
		if stun.MessageIntegrity(key).Check(req) == nil {
			return key
		}
	}
	return nil
}
