package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// Control plane of one client: a minimal TURN client (RFC 8656) on pion/stun.
// Requests go out on the client's socket; the client's reader hands every
// STUN response back through ctrl, so control and data share one socket as a
// real client's would.

const (
	rto          = 250 * time.Millisecond // first retransmission timeout; loopback needs no more
	maxSends     = 5                      // RFC 8489 suggests Rc=7; five covers 250ms..4s
	maxAuthTries = 3                      // unauthenticated, 401 with realm+nonce, one 438 stale nonce
	lifetime     = 600                    // seconds requested on Refresh
	udpTransport = 17                     // REQUESTED-TRANSPORT protocol number for UDP
)

// peerAttr is XOR-PEER-ADDRESS as a stun.Setter.
type peerAttr netip.AddrPort

func (p peerAttr) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

// RFC 8656, section 14.1: "The CHANNEL-NUMBER attribute contains the number
// of the channel. The value portion of this attribute is 4 bytes long and
// consists of a 16-bit unsigned integer followed by a two-octet RFFU
// (Reserved For Future Use) field, which MUST be set to 0 on transmission".
func channelAttr(ch uint16) stun.RawAttribute {
	v := make([]byte, 4)
	binary.BigEndian.PutUint16(v, ch)
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}
}

func lifetimeAttr(seconds uint32) stun.RawAttribute {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, seconds)
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
}

// RFC 8656, section 14.7: REQUESTED-TRANSPORT "contains a transport protocol
// number [...] followed by 3 bytes RFFU"; 17 is UDP.
var transportUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{udpTransport, 0, 0, 0}}

// transact sends one request of method with attrs and returns the success
// response. It runs the long-term credential dance of RFC 8489 section 9.2:
// the first request goes out unauthenticated, a 401 carries REALM and NONCE,
// and a 438 Stale Nonce carries a fresh NONCE to retry with.
func (c *client) transact(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	for try := 0; try < maxAuthTries; try++ {
		setters := make([]stun.Setter, 0, len(attrs)+7)
		setters = append(setters, stun.TransactionID, stun.NewType(method, stun.ClassRequest))
		setters = append(setters, attrs...)
		authed := c.nonce != ""
		if authed {
			setters = append(setters, stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), c.key)
		}
		setters = append(setters, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			return nil, fmt.Errorf("loadgen: client %d: build %s: %w", c.id, method, err)
		}
		res, err := c.roundTrip(req)
		if err != nil {
			return nil, fmt.Errorf("loadgen: client %d: %s: %w", c.id, method, err)
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			return res, nil
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(res); err != nil {
			return nil, fmt.Errorf("loadgen: client %d: %s error without ERROR-CODE: %w", c.id, method, ErrRejected)
		}
		stale := code.Code == stun.CodeStaleNonce
		if (code.Code == stun.CodeUnauthorized && !authed) || stale {
			var realm stun.Realm
			var nonce stun.Nonce
			if err := nonce.GetFrom(res); err != nil {
				return nil, fmt.Errorf("loadgen: client %d: %s %d without NONCE: %w", c.id, method, code.Code, ErrRejected)
			}
			if err := realm.GetFrom(res); err == nil {
				c.realm = realm.String()
			}
			c.nonce = nonce.String()
			c.key = stun.NewLongTermIntegrity(c.user, c.realm, c.pass)
			continue
		}
		return nil, fmt.Errorf("loadgen: client %d: %s: %d %s: %w", c.id, method, code.Code, code.Reason, ErrRejected)
	}
	return nil, fmt.Errorf("loadgen: client %d: %s: authentication did not settle: %w", c.id, method, ErrRejected)
}

// roundTrip writes req and waits for the response with its transaction ID,
// retransmitting with a doubling timeout (RFC 8489 section 6.2.1).
func (c *client) roundTrip(req *stun.Message) (*stun.Message, error) {
	wait := rto
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for send := 0; send < maxSends; send++ {
		if _, err := c.conn.Write(req.Raw); err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
		timer.Reset(wait)
	recv:
		for {
			select {
			case raw, ok := <-c.ctrl:
				if !ok {
					return nil, errClosed
				}
				res := &stun.Message{Raw: raw}
				if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID {
					continue // late answer to an earlier retransmission, or junk
				}
				return res, nil
			case <-timer.C:
				break recv
			case <-c.r.stop:
				return nil, errClosed
			}
		}
		wait *= 2
	}
	return nil, ErrTimeout
}

var errClosed = errors.New("loadgen: client closed")

// allocate runs Allocate and records the relayed address.
func (c *client) allocate() error {
	res, err := c.transact(stun.MethodAllocate, transportUDP)
	if err != nil {
		return err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return fmt.Errorf("loadgen: client %d: allocate response: %w", c.id, err)
	}
	ip, ok := netip.AddrFromSlice(relayed.IP)
	if !ok {
		return fmt.Errorf("loadgen: client %d: relayed address %v: %w", c.id, relayed.IP, ErrRejected)
	}
	c.relayed = netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port))
	return nil
}

// bind installs what the mode needs to reach c.peer: a channel (which also
// installs the permission, RFC 8656 section 12.2) or a permission.
func (c *client) bind(channel bool) error {
	if channel {
		_, err := c.transact(stun.MethodChannelBind, channelAttr(c.channel), peerAttr(c.peer))
		return err
	}
	_, err := c.transact(stun.MethodCreatePermission, peerAttr(c.peer))
	return err
}

// refresh extends the allocation and re-installs the channel or permission,
// whose lifetimes (5 minutes for permissions, 10 for channels) are shorter
// than the longest run.
func (c *client) refresh(channel bool) error {
	if _, err := c.transact(stun.MethodRefresh, lifetimeAttr(lifetime)); err != nil {
		return err
	}
	return c.bind(channel)
}

// RFC 8656, section 7.2: "If the requested lifetime is zero, then the
// server MUST delete the allocation" — here a best-effort parting shot:
// one authenticated Refresh with LIFETIME 0, not waited for, so a run leaves
// no allocations behind for the next one to collide with (437).
func (c *client) deallocate() {
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if c.nonce == "" || !c.relayed.IsValid() {
		return
	}
	req, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		lifetimeAttr(0), stun.NewUsername(c.user), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), c.key, stun.Fingerprint)
	if err != nil {
		return
	}
	_, _ = c.conn.Write(req.Raw)
}
