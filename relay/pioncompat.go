//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// The places where the relay depends on how pion/turn v5 behaves rather than on what its API
// promises, grouped here. Each is checked against the real pion server by a test in
// pioncompat_test.go that fails if pion changes under it.
//
//  1. A ChannelBind whose peer the PermissionHandler refuses: pion answers 401 carrying
//     MESSAGE-INTEGRITY where RFC 8656 §12.2 asks for 403, and the relay rewrites the answer
//     (fixChannelBindRefusal). It relies on pion calling the AuthHandler for the ChannelBind,
//     with the client's address as SrcAddr, before it writes the answer to that same address.
//     Test: TestPionRefusesChannelBindWith401.
//  2. Key rotation: pion's AuthHandler returns one key, so while shared secrets rotate the
//     relay finds the one that signed a request just before pion reads it (checkRotation) and
//     hands its index to the AuthHandler (rotationPassword). It relies on pion calling the
//     AuthHandler for a message after reading it and before reading the next one from the same
//     listener, with SrcAddr the address ReadFrom returned. Test: TestPionAuthenticatesInReadOrder.
//  3. The lifetime cap: Config.AllocationLifetime is the default lifetime, and pion, not the
//     relay, keeps a LIFETIME a client asks for within an hour (RFC 8656 §7.2's recommended
//     maximum): it grants one shorter than an hour as asked and answers a longer one with the
//     default. Test: TestPionCapsRequestedLifetime.
//  4. Nonces bound to the 5-tuple (nonce.go): pion takes no nonce generator, so the relay
//     swaps nonces on the way out and back. It relies on pion's 401 and 438 answers carrying
//     a NONCE of at most nonceLen characters and no MESSAGE-INTEGRITY (so the NONCE can be
//     replaced), on pion accepting its nonce left-padded with '0' (so a request keeps its
//     size when its NONCE is put back), and on pion answering a NONCE it cannot read with 438
//     before it calls the AuthHandler. Test: TestPionNonceShape.
//  5. The per-allocation caps (caps.go) follow one request from the facade to pion's answer by
//     the net.Addr pion was given for it: they rely on pion passing the very value ReadFrom
//     returned (UDP: a new *net.UDPAddr per datagram; stream: the connection's RemoteAddr) as
//     SrcAddr to the AuthHandler and the PermissionHandler and as the destination of its
//     answer, and on pion asking the PermissionHandler before it installs each peer of a
//     CreatePermission, stopping at the first refused. Test: TestCapsAnswer508.
//  6. Ending an allocation now (the admin API, a revocation: admin.go) has no pion API: the
//     relay makes the allocation's relay PacketConn fail its next read (relayConn.end), and
//     relies on pion's reader then deleting the allocation as its lifetime timer does
//     (DeleteAllocation: permissions and channels removed, the socket closed, the
//     EventHandler told). Test: TestPionDeletesAllocationWhoseRelayReadFails.
//  7. RFC 6062 TCP relay (tcprelay.go): the relay moves a bound pair's bytes itself because
//     pion's ConnectionBind handler joins the pair with io.Copy(peer, client) and
//     io.Copy(client, peer), the client side being the net.Conn the listener gave it (a
//     framedConn, whose WriteTo and ReadFrom io.Copy then calls), the peer side a wrapper
//     showing the LocalAddr and RemoteAddr of the net.Conn AllocateConn or the relayed
//     listener's Accept returned; pion closes both when the first copy returns. A Connect is
//     put to the PermissionHandler, with the request's SrcAddr, before AllocateConn is called
//     (so a refusal there is a 403 with no connection attempted); an inbound peer connection
//     needs a permission after Accept returns; Accept returning an error ends the
//     allocation. Tests: TestTCPAllocationConnect and TestTCPAllocationAccept (the bytes
//     counted on the TCP path are counted only by framedConn's copies),
//     TestTCPConnectPeerPolicyDefault (403 and no dial).
//  8. A Refresh with valid credentials from a 5-tuple with no allocation: pion answers nothing
//     (handleRefreshRequest returns an error without sending one), where RFC 8656 §7.3 asks
//     for 437, and the relay answers 437 itself for the allocations an operator ended
//     (mismatch.go). Test: TestPionLeavesRefreshWithoutAllocationUnanswered.
//  9. Memory per idle allocation: pion's allocation reader takes its read buffer from a pool
//     only once the relay PacketConn's WaitRead says a datagram is there (relayConn.WaitRead).
//     That is a patch of ours (third_party/pion-turn/PATCHES.md); a pion without it gives
//     every allocation a buffer of its own again. Test: TestPionWaitsBeforeTakingReadBuffer.

// rotationPassword picks, of the live passwords of a username with more than one, the one
// checkRotation found the request signed with (the first if it found none).
func (s *Server) rotationPassword(ra *turn.RequestAttributes, passwords []string) string {
	if len(passwords) > 1 {
		if i, ok := s.precheck.take(ra.SrcAddr, ra.Username); ok && i < len(passwords) {
			return passwords[i]
		}
	}
	return passwords[0]
}

// rememberBindKey keeps the key of a ChannelBind pion is authenticating, for
// fixChannelBindRefusal, and of a CreatePermission or ChannelBind the caps noted, for
// capAnswer.
func (s *Server) rememberBindKey(ra *turn.RequestAttributes, key []byte) {
	if ra.Method == stun.MethodChannelBind {
		s.bindKeys.put(ra.SrcAddr, key)
	}
	s.noteCapKey(ra, key)
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
	if len(b) < stunHeaderSize || binary.BigEndian.Uint16(b[0:2]) != channelBindError || stunErrorCode(b) != int(stun.CodeUnauthorized) {
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
