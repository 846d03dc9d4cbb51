//go:build linux

package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/relay/policy"
)

// Per-allocation caps on permissions and channels, and a rate on the requests that make them
// (Config.MaxPermissions, MaxChannels, PermissionRate).
//
// RFC 8656 §9.2 (CreatePermission): "If the request is valid, but the server is unable to
// satisfy the request due to some capacity limit or similar, then a 508 (Insufficient
// Capacity) error is returned." §12.2 answers a ChannelBind the same way. RFC 8656 has no code
// for a rate; the rate limit answers 508 too, as "a capacity limit or similar": a signed,
// definitive answer the size of the request, the same over UDP and TCP (where a client does
// not retransmit, so a silently dropped request would hang it for 39.5 s, RFC 8489 §6.2.2);
// 486 (Allocation Quota Reached, coturn's other quota answer) belongs to Allocate.
//
// pion's PermissionHandler can only say yes or no, which pion answers 403 (CreatePermission)
// or 401 (ChannelBind). So the relay decides in three steps, each keyed by the source address
// as pion passes it along: the very net.Addr the facade gave pion for the request (a new one
// per UDP datagram; the connection's own for a stream, whose requests pion handles in order),
// so two requests in flight never share an entry (pioncompat.go, item 5):
//
//  1. noteCapRequest (from admitRequest, before pion reads the request, after the nonce
//     check) finds the allocation of the 5-tuple and the peer IPs and channel the request
//     names.
//  2. pion authenticates the request and asks the PermissionHandler about each peer:
//     capAllows decides for the whole request at the first call — a token from the
//     allocation's bucket, then the IPs new to it against the cap — and answers every call
//     of the request alike, so a refused request installs nothing. Taking the token only
//     after pion checked MESSAGE-INTEGRITY keeps a spoofer from spending a victim's tokens.
//  3. capAnswer (from passAnswer) replaces pion's answer to a refused request by a 508,
//     signed with the request's long-term key (noted by noteCapKey when pion asked the
//     AuthHandler for it).

// capReason is why capAllows refused a request. Its string is the log's reason.
type capReason uint8

const (
	capOK capReason = iota
	capPermissions
	capChannels
	capRate
	numCapReasons
)

var capReasonNames = [numCapReasons]string{"ok", "permissions", "channels", "rate"}

func (r capReason) String() string { return capReasonNames[r] }

// capRequest is one CreatePermission or ChannelBind request between admitRequest and pion's
// answer. Guarded by its capGate's mu.
type capRequest struct {
	a       *allocation
	ips     []netip.Addr // distinct peer IPs the request names, in pion's order of granting
	channel uint16       // ChannelBind: the channel number; 0 for CreatePermission
	decided bool
	refusal capReason
	key     []byte // the long-term key pion checked the request with
}

// capGate holds the requests in flight. Entries are taken by the answer; the few that get
// none (pion found no allocation after all) are dropped when the map outgrows maxCapPending.
type capGate struct {
	mu      sync.Mutex
	m       map[net.Addr]*capRequest // by the request's source, compared by identity. Guarded by mu.
	refused [numCapReasons]atomic.Uint64
}

const maxCapPending = 1 << 16

// requestCost is one request in the allocation's bucket, which counts thousandths so that
// rates below one per second work.
const requestCost = 1000

// capsOn reports whether any cap or rate is set.
func (s *Server) capsOn() bool {
	return s.cfg.MaxPermissions > 0 || s.cfg.MaxChannels > 0 || s.cfg.PermissionRate > 0
}

// newRequestBucket returns an allocation's bucket of CreatePermission and ChannelBind
// requests (nil: unlimited): PermissionRate per second, 5 seconds' worth (and one) at once.
func (s *Server) newRequestBucket() *policy.Bucket {
	r := s.cfg.PermissionRate
	if r <= 0 {
		return nil
	}
	return policy.NewBucket(max(1, int64(r*requestCost)), (int64(r*5)+1)*requestCost)
}

var (
	createPermissionRequest = stun.NewType(stun.MethodCreatePermission, stun.ClassRequest).Value()
	channelBindRequest      = stun.NewType(stun.MethodChannelBind, stun.ClassRequest).Value()
)

// noteCapRequest is step 1: called by admitRequest for every message pion will read, it notes
// a CreatePermission or ChannelBind request that client sent over end on a live allocation,
// under src (the address pion will be given for it).
func (s *Server) noteCapRequest(m []byte, client netip.AddrPort, src net.Addr, end tupleEnd) {
	if len(m) < stunHeaderSize || !s.capsOn() {
		return
	}
	t := binary.BigEndian.Uint16(m[0:2])
	if t != createPermissionRequest && t != channelBindRequest {
		return
	}
	_, local := end.tupleEnd()
	s.mu.Lock()
	a := s.allocs[allocKey{src: client, dst: local}]
	s.mu.Unlock()
	if a == nil {
		return // pion answers 437 (or 401 first)
	}
	msg := &stun.Message{Raw: append([]byte(nil), m...)}
	if msg.Decode() != nil {
		return // pion cannot read it either
	}
	req := &capRequest{a: a}
	// pion grants the peers in order and stops at the first it cannot read (answering 400,
	// the ones before it granted): note the same ones.
	_ = msg.ForEach(stun.AttrXORPeerAddress, func(sub *stun.Message) error {
		var xa stun.XORMappedAddress
		if err := xa.GetFromAs(sub, stun.AttrXORPeerAddress); err != nil {
			return err
		}
		if ip, ok := netip.AddrFromSlice(xa.IP); ok {
			req.ips = append(req.ips, ip.Unmap())
		}
		return nil
	})
	slices.SortFunc(req.ips, netip.Addr.Compare)
	req.ips = slices.Compact(req.ips)
	if t == channelBindRequest {
		if v, err := msg.Get(stun.AttrChannelNumber); err == nil && len(v) >= 2 {
			req.channel = binary.BigEndian.Uint16(v)
		}
	}
	g := &s.caps
	g.mu.Lock()
	if g.m == nil || len(g.m) >= maxCapPending {
		g.m = map[net.Addr]*capRequest{}
	}
	g.m[src] = req
	g.mu.Unlock()
}

// noteCapKey keeps the key pion authenticates a noted request with, for capAnswer.
func (s *Server) noteCapKey(ra *turn.RequestAttributes, key []byte) {
	if ra.Method != stun.MethodCreatePermission && ra.Method != stun.MethodChannelBind {
		return
	}
	g := &s.caps
	g.mu.Lock()
	if r := g.m[ra.SrcAddr]; r != nil {
		r.key = key
	}
	g.mu.Unlock()
}

// permitPeer is pion's PermissionHandler: the peer policy (permit) and, for a Connect, the
// port (tcprelay.go), then the caps.
func (s *Server) permitPeer(client net.Addr, peer net.IP) bool {
	if !s.permit(client, peer) || !s.connectPortOK(client) {
		s.countConnectRefusal(client) // tcprelay.go
		return false
	}
	return s.capAllows(client)
}

// capAllows is step 2: whether the request pion is handling for src stays within its
// allocation's rate and caps. A request that was not noted (no allocation when it arrived)
// is not limited here.
func (s *Server) capAllows(src net.Addr) bool {
	g := &s.caps
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.m[src]
	if r == nil {
		return true
	}
	if !r.decided {
		r.decided = true
		r.refusal = s.capDecide(r)
		if r.refusal != capOK {
			g.refused[r.refusal].Add(1)
			if !r.a.capLogged.Swap(true) {
				s.log.Info("allocation over a per-allocation limit: request refused with 508 (logged once per allocation)",
					"client", src.String(), "relay", r.a.rc.advertised.String(), "limit", r.refusal.String(),
					"max-permissions", s.cfg.MaxPermissions, "max-channels", s.cfg.MaxChannels)
			}
		}
	}
	return r.refusal == capOK
}

// capDecide takes a token for r from its allocation's bucket and checks the caps. A refresh
// (an IP the allocation holds, a channel it has bound) adds nothing to the counts.
func (s *Server) capDecide(r *capRequest) capReason {
	a := r.a
	if b := a.requests; b != nil && !b.Take(requestCost, s.cfg.now().UnixNano()) {
		return capRate
	}
	perms, chans := a.Counts()
	if limit := s.cfg.MaxPermissions; limit > 0 {
		n := perms
		for _, ip := range r.ips {
			if !a.Permitted(ip) {
				n++
			}
		}
		if n > limit {
			return capPermissions
		}
	}
	if limit := s.cfg.MaxChannels; limit > 0 && r.channel != 0 && a.ChanByNum(r.channel) == nil && chans >= limit {
		return capChannels
	}
	return capOK
}

// capAnswer is step 3: called by passAnswer with every answer pion writes to client to, it
// forgets the request answered, and answers a refused one 508 Insufficient Capacity, signed.
func (s *Server) capAnswer(b []byte, to net.Addr) []byte {
	if len(b) < stunHeaderSize || !s.capsOn() {
		return b
	}
	var mt stun.MessageType
	mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	if (mt.Method != stun.MethodCreatePermission && mt.Method != stun.MethodChannelBind) ||
		(mt.Class != stun.ClassSuccessResponse && mt.Class != stun.ClassErrorResponse) {
		return b
	}
	g := &s.caps
	g.mu.Lock()
	r := g.m[to]
	delete(g.m, to)
	g.mu.Unlock()
	if r == nil || r.refusal == capOK || r.key == nil || mt.Class != stun.ClassErrorResponse {
		return b
	}
	var tid [stun.TransactionIDSize]byte
	copy(tid[:], b[8:stunHeaderSize])
	out, err := stun.Build(&stun.Message{TransactionID: tid},
		stun.NewType(mt.Method, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeInsufficientCapacity},
		stun.MessageIntegrity(r.key), stun.Fingerprint)
	if err != nil {
		return b
	}
	return out.Raw
}
