//go:build linux

package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // MESSAGE-INTEGRITY is HMAC-SHA1 (RFC 8489 §14.5)
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/sock"
)

// Nonces bound to the client's 5-tuple.
//
// The NONCE of the long-term credential mechanism (RFC 8489 §9.2) is the server's to choose
// and to revoke; RFC 8489 §9.2.4: "If the NONCE is no longer valid, the server MUST generate
// an error response with an error code of 438 (Stale Nonce)." pion's nonce is the same for
// every client within a minute, so a credential holder could take one from its own address
// and send Allocate, CreatePermission and ChannelBind from a spoofed victim address, making
// the relay a reflector. pion takes no nonce generator, so the relay puts its own nonce in
// place of pion's on the way out and checks it on the way in:
//
//   - out (passAnswer → bindAnswerNonce): every error answer pion writes with a NONCE (401,
//     438) leaves with a nonce of ours, an HMAC over the issue time, the transport, the
//     listener address and the client address under a per-process key. pion's own nonce
//     is kept (Server.pionNonce) for the way in.
//   - in (admitRequest → bindRequestNonce): a TURN request whose NONCE is not ours for this
//     5-tuple, or is older than nonceLifetime, has it spoiled so that pion answers 438 with a
//     fresh nonce, which goes out bound to this 5-tuple (signed or not: the relay does not
//     rely on pion's nonce staying secret). A request whose nonce is ours has it replaced by pion's (left-padded to the
//     same length, so the message keeps its size and is rewritten in place) and, when its
//     MESSAGE-INTEGRITY verifies with the user's key, is signed again with that key so that
//     pion's own check passes. A request whose MESSAGE-INTEGRITY verifies with no key keeps
//     the client's: pion answers it 401, as before.
//
// What this relies on in pion is listed in pioncompat.go (item 4).

const (
	// nonceLen is the length of our NONCE value: base64url of a 4-byte issue time and a
	// 20-byte HMAC. pion's nonce (shorter) is left-padded with '0' to this length.
	nonceLen = 32
	// nonceLifetime is how long a nonce is accepted from its 5-tuple; past it the client
	// gets 438 and a new one. It is well within pion's own nonce lifetime (an hour), which
	// bounds how long the pion nonce put in its place stays valid.
	nonceLifetime = 30 * time.Minute
	// pionNonceMaxAge is how old the kept pion nonce may be before a request is sent to
	// pion to be answered 438 (fetching a fresh one) instead.
	pionNonceMaxAge = 50 * time.Minute
)

// nonceSigner mints and checks our nonces. Static after construction.
type nonceSigner struct {
	key [32]byte
	now func() time.Time
	// macs holds keyed HMAC-SHA256 states (hash.Hash) to Reset and reuse: hmac.New allocates
	// two digests and hashes the padded key on every call, and every allocation mints one
	// nonce and checks one. Locks itself.
	macs *sync.Pool
}

func newNonceSigner(now func() time.Time) nonceSigner {
	var n nonceSigner
	if _, err := rand.Read(n.key[:]); err != nil {
		panic("relay: no randomness for the nonce key: " + err.Error()) // crypto/rand does not fail on Linux
	}
	if now == nil {
		now = time.Now
	}
	n.now = now
	key := n.key
	n.macs = &sync.Pool{New: func() any { return hmac.New(sha256.New, key[:]) }}
	return n
}

// tupleEnd is the listener end of a client's 5-tuple: its transport (udp, or a stream) and
// the listener's address. The client facades implement it.
type tupleEnd interface {
	tupleEnd() (stream bool, local netip.AddrPort)
}

func (l *listenerShard) tupleEnd() (bool, netip.AddrPort) { return false, l.g.addr }

func (c *framedConn) tupleEnd() (bool, netip.AddrPort) {
	ap, _ := sock.AddrPortOf(c.Conn.LocalAddr())
	return true, ap
}

// mac returns the HMAC of a nonce issued at ts to client over the given listener end,
// truncated to 20 bytes.
func (n *nonceSigner) mac(ts uint32, stream bool, local, client netip.AddrPort) (out [20]byte) {
	var b [4 + 1 + 2*18]byte
	binary.BigEndian.PutUint32(b[0:], ts)
	if stream {
		b[4] = 1
	}
	putAddrPort(b[5:], local)
	putAddrPort(b[23:], client)
	h := n.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(b[:])
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	n.macs.Put(h)
	copy(out[:], sum[:])
	return out
}

func putAddrPort(b []byte, ap netip.AddrPort) {
	a := ap.Addr().Unmap().As16()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[16:], ap.Port())
}

// mint returns a nonce for client over end, issued now.
func (n *nonceSigner) mint(stream bool, local, client netip.AddrPort) string {
	var raw [24]byte
	ts := uint32(n.now().Unix())
	binary.BigEndian.PutUint32(raw[:], ts)
	mac := n.mac(ts, stream, local, client)
	copy(raw[4:], mac[:])
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// valid reports whether nonce is one we issued to client over end, within nonceLifetime.
func (n *nonceSigner) valid(nonce []byte, stream bool, local, client netip.AddrPort) bool {
	if len(nonce) != nonceLen {
		return false
	}
	var raw [24]byte
	if k, err := base64.RawURLEncoding.Decode(raw[:], nonce); err != nil || k != len(raw) {
		return false
	}
	ts := binary.BigEndian.Uint32(raw[:])
	age := n.now().Unix() - int64(ts)
	if age < -5 || age > int64(nonceLifetime/time.Second) { // -5: the clock stepped back a little
		return false
	}
	mac := n.mac(ts, stream, local, client)
	return subtle.ConstantTimeCompare(raw[4:], mac[:]) == 1
}

// pionNonce is a nonce pion issued, kept for requests that carry ours.
type pionNonce struct {
	padded string // left-padded with '0' to nonceLen
	at     time.Time
}

// bindAnswerNonce replaces the NONCE of an error answer pion wrote to client over end by
// ours, keeping pion's. Answers without a NONCE are returned as they are.
func (s *Server) bindAnswerNonce(b []byte, client netip.AddrPort, end tupleEnd) []byte {
	off, l, ok := findAttr(b, stun.AttrNonce)
	if !ok {
		return b
	}
	if _, _, signed := findAttr(b, stun.AttrMessageIntegrity); signed {
		return b // pion's answers with a NONCE are unsigned; leave anything else alone
	}
	if p := string(b[off : off+l]); len(p) <= nonceLen {
		s.pionNonce.Store(&pionNonce{padded: strings.Repeat("0", nonceLen-len(p)) + p, at: s.nonces.now()})
	}
	stream, local := end.tupleEnd()
	ours := s.nonces.mint(stream, local, client)
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil {
		return b
	}
	out := &stun.Message{Type: m.Type, TransactionID: m.TransactionID}
	out.WriteHeader()
	fp := false
	for _, a := range m.Attributes {
		switch a.Type {
		case stun.AttrNonce:
			out.Add(stun.AttrNonce, []byte(ours))
		case stun.AttrFingerprint:
			fp = true
		default:
			out.Add(a.Type, a.Value)
		}
	}
	if fp && stun.Fingerprint.AddTo(out) != nil {
		return b
	}
	return out.Raw
}

// bindRequestNonce checks the NONCE of an authenticated TURN request m from client (src as
// pion will see it) over end, and rewrites m in place for pion (see the top of this file). It
// reports whether it handled the request's credentials: then the key-rotation check is not
// needed, as it has found the signing password itself or pion will refuse the request before
// asking for one.
func (s *Server) bindRequestNonce(m []byte, client netip.AddrPort, src net.Addr, end tupleEnd) bool {
	if s.cfg.Validator == nil || !isAuthenticatedTURNRequest(m) {
		return false
	}
	nOff, nLen, ok := findAttr(m, stun.AttrNonce)
	if !ok {
		return false
	}
	miOff, _, signed := findAttrHeader(m, stun.AttrMessageIntegrity)
	stream, local := end.tupleEnd()
	pn := s.pionNonce.Load()
	valid := s.nonces.valid(m[nOff:nOff+nLen], stream, local, client)
	if !valid && stream {
		// A ConnectionBind comes on a new data connection with the nonce of the control
		// connection (RFC 6062 §4.3; pion's client does not retry it on 438).
		if ctl, ok := s.controlTupleOf(m); ok {
			valid = s.nonces.valid(m[nOff:nOff+nLen], stream, local, ctl)
		}
	}
	if !valid || pn == nil || s.nonces.now().Sub(pn.at) > pionNonceMaxAge {
		// RFC 8489 §9.2.4: "If the NONCE is no longer valid, the server MUST generate an
		// error response with an error code of 438 (Stale Nonce)." pion answers it for a
		// NONCE it cannot read; the answer leaves with a nonce bound to this 5-tuple.
		for i := nOff; i < nOff+nLen; i++ {
			m[i] = '-'
		}
		if mt := s.cfg.Metrics; mt != nil && signed {
			mt.AuthFailure(metrics.AuthStaleNonce)
		}
		return true
	}
	if !signed {
		// pion answers 401 (no MESSAGE-INTEGRITY) or 438/400 (one it cannot use) anyway.
		copy(m[nOff:nOff+nLen], pn.padded)
		return true
	}
	// Found before the NONCE changes: the client signed the nonce it sent.
	user := stringAttr(m, stun.AttrUsername)
	realm := stringAttr(m, stun.AttrRealm)
	key, index, passwords := s.requestKey(m, miOff, user, realm)
	copy(m[nOff:nOff+nLen], pn.padded)
	if key == nil {
		return true // no key verifies MESSAGE-INTEGRITY: pion answers 401
	}
	if passwords > 1 {
		s.precheck.put(src, user, index)
	}
	resign(m, miOff, key)
	return true
}

// requestKey finds the long-term key (RFC 8489 §9.2.2) that m's MESSAGE-INTEGRITY, at miOff,
// was made with: of the username's live passwords, the one that verifies, with its index
// and the number of passwords. It returns a nil key when the username is unknown, is a
// locked-out static user, or no password verifies; a static user's wrong password counts
// towards its lockout (s.lockout). Only requests whose nonce is bound to their 5-tuple get
// here, so a spoofed source can neither guess nor lock.
func (s *Server) requestKey(m []byte, miOff int, user, realm string) (key []byte, index, passwords int) {
	if user == "" {
		return nil, 0, 0
	}
	cred, err := s.cfg.Validator.Lookup(user)
	if err != nil {
		return nil, 0, 0
	}
	static := isStaticUser(cred)
	if static && s.lockout.Locked(user, time.Now().UnixNano()) {
		return nil, 0, 0 // authenticate refuses it, whatever the password
	}
	got := m[miOff+4 : miOff+24]
	for i, pw := range cred.Passwords {
		k := turn.GenerateAuthKey(user, realm, pw)
		if mac := messageIntegrity(m, miOff, k); hmac.Equal(mac[:], got) {
			return k, i, len(cred.Passwords)
		}
	}
	if static {
		s.lockout.Fail(user, time.Now().UnixNano())
	}
	return nil, 0, len(cred.Passwords)
}

// resign writes the MESSAGE-INTEGRITY at miOff of m again with key, and the FINGERPRINT
// after it if there is one.
//
// RFC 8489 §14.5: the HMAC covers the message up to the attribute preceding
// MESSAGE-INTEGRITY, with the header's length "adjusted to point to the end of the
// MESSAGE-INTEGRITY attribute"; §14.7: FINGERPRINT is "the CRC-32 of the STUN message up to
// (but excluding) the FINGERPRINT attribute ... XOR'ed with the 32-bit value 0x5354554e".
func resign(m []byte, miOff int, key []byte) {
	mac := messageIntegrity(m, miOff, key)
	copy(m[miOff+4:miOff+24], mac[:])
	if fpOff, _, ok := findAttrHeader(m, stun.AttrFingerprint); ok && fpOff+8 == len(m) {
		binary.BigEndian.PutUint32(m[fpOff+4:], crc32.ChecksumIEEE(m[:fpOff])^0x5354554e)
	}
}

// messageIntegrity computes the MESSAGE-INTEGRITY value of m for the attribute at miOff into
// mac (20 bytes) and returns it.
func messageIntegrity(m []byte, miOff int, key []byte) (mac [sha1.Size]byte) {
	var hdr [2]byte
	copy(hdr[:], m[2:4])
	binary.BigEndian.PutUint16(m[2:4], uint16(miOff+24-stunHeaderSize))
	mac = auth.HMACSHA1(key, m[:miOff])
	copy(m[2:4], hdr[:])
	return mac
}

// Byte-level looks at the attributes bindRequestNonce and bindAnswerNonce rewrite (see
// stunwire.go for the others).

// authenticatedRequests are the request types pion checks long-term credentials on.
var authenticatedRequests = [...]uint16{
	stun.NewType(stun.MethodAllocate, stun.ClassRequest).Value(),
	stun.NewType(stun.MethodRefresh, stun.ClassRequest).Value(),
	stun.NewType(stun.MethodCreatePermission, stun.ClassRequest).Value(),
	stun.NewType(stun.MethodChannelBind, stun.ClassRequest).Value(),
	stun.NewType(stun.MethodConnect, stun.ClassRequest).Value(),
	stun.NewType(stun.MethodConnectionBind, stun.ClassRequest).Value(),
}

// isAuthenticatedTURNRequest reports whether b is a request pion authenticates.
func isAuthenticatedTURNRequest(b []byte) bool {
	if len(b) < stunHeaderSize {
		return false
	}
	t := binary.BigEndian.Uint16(b[0:2])
	for _, a := range authenticatedRequests {
		if t == a {
			return true
		}
	}
	return false
}

// findAttrHeader returns the offset of the first attribute of type t in STUN message b and
// its length, walking no further than the message's length field and b. ok is false when
// there is none or the attributes before it do not parse.
func findAttrHeader(b []byte, t stun.AttrType) (off, length int, ok bool) {
	if len(b) < stunHeaderSize {
		return 0, 0, false
	}
	end := min(len(b), stunHeaderSize+int(binary.BigEndian.Uint16(b[2:4])))
	for off = stunHeaderSize; off+4 <= end; {
		at := stun.AttrType(binary.BigEndian.Uint16(b[off:]))
		l := int(binary.BigEndian.Uint16(b[off+2:]))
		if off+4+l > end {
			return 0, 0, false
		}
		if at == t {
			if t == stun.AttrMessageIntegrity && l != 20 {
				return 0, 0, false
			}
			return off, l, true
		}
		off += 4 + (l+3)&^3
	}
	return 0, 0, false
}

// findAttr is findAttrHeader returning the offset of the attribute's value.
func findAttr(b []byte, t stun.AttrType) (off, length int, ok bool) {
	off, length, ok = findAttrHeader(b, t)
	return off + 4, length, ok
}

// stringAttr returns the value of the first attribute of type t in b ("" if none).
func stringAttr(b []byte, t stun.AttrType) string {
	off, l, ok := findAttr(b, t)
	if !ok {
		return ""
	}
	return string(b[off : off+l])
}
