//go:build linux

package relay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/policy"
)

// eventHandler keeps the fast-path table and the gauges in step with what pion decided, and
// logs one line per allocation event. pion calls these from its own goroutines, sometimes
// with its locks held: nothing here calls back into pion or blocks on a worker.
func (s *Server) eventHandler() turn.EventHandler {
	return turn.EventHandler{
		OnAuth: func(src, dst net.Addr, protocol, username, realm, method string, verdict bool) {
			if verdict {
				return
			}
			// Our AuthHandler knew the username, so the MESSAGE-INTEGRITY was made with
			// another password: a forged or mistyped credential.
			if m := s.cfg.Metrics; m != nil {
				m.AuthFailure(metrics.AuthForged)
				if method == "Allocate" {
					m.AllocationAttempt(metrics.AttemptAuth)
				}
			}
			s.logInput(metrics.AuthForged, "authentication failed", "client", src.String(), "method", method)
		},
		OnAllocationCreated: s.onAllocationCreated,
		OnAllocationDeleted: s.onAllocationDeleted,
		OnPermissionCreated: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			ip, ok := netip.AddrFromSlice(peer)
			if a := s.allocOf(src, dst); a != nil && ok && s.fast.Permit(a.Alloc, ip.Unmap()) {
				s.permCount.Add(1)
			}
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			ip, ok := netip.AddrFromSlice(peer)
			if a := s.allocOf(src, dst); a != nil && ok && s.fast.Revoke(a.Alloc, ip.Unmap()) {
				s.permCount.Add(-1)
			}
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, num uint16) {
			ap, ok := sock.AddrPortOf(peer)
			a := s.allocOf(src, dst)
			if a == nil || !ok {
				return
			}
			c := &dataplane.Chan{Num: num, Peer: ap, Refused: !s.peerPortOK(ap)}
			c.Raw.Set(ap)
			if s.fast.Bind(a.Alloc, c) {
				s.chanCount.Add(1)
			}
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, _, _ net.Addr, num uint16) {
			if a := s.allocOf(src, dst); a != nil && s.fast.Unbind(a.Alloc, num) {
				s.chanCount.Add(-1)
			}
		},
	}
}

// allocation is one live allocation: the workers' view of it, its relay socket, and what
// the gauges count it under. Static after construction (its permissions and channels change
// through the Table).
type allocation struct {
	*dataplane.Alloc
	rc        *relayConn
	family    int            // metrics family index
	transport int            // metrics transport index
	requests  *policy.Bucket // CreatePermission and ChannelBind requests (caps.go); nil: unlimited. Locks itself.
	capLogged atomic.Bool    // a refusal by the caps was logged (caps.go)

	// For the admin API (admin.go).
	id      uint64       // rc.seq<<16 | relay port. Static.
	user    string       // pion's user ID (the credential's user). Static.
	key     allocKey     // client and listener addresses. Static.
	expires atomic.Int64 // Unix ns the lifetime last granted ends (passAnswer: noteLifetime); 0: not seen
	rate    rateSample   // the last reading, for the current rate. Locks itself.
}

func keyOf(src, dst net.Addr) (allocKey, bool) {
	s, ok1 := sock.AddrPortOf(src)
	d, ok2 := sock.AddrPortOf(dst)
	return allocKey{src: s, dst: d}, ok1 && ok2
}

// allocOf returns the live allocation of the 5-tuple, or nil. Every operation on the maps
// behind it is O(1): s.mu is held for one map read.
func (s *Server) allocOf(src, dst net.Addr) *allocation {
	k, ok := keyOf(src, dst)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allocs[k]
}

func (s *Server) onAllocationCreated(src, dst net.Addr, protocol, userID, realm string, relayAddr net.Addr, requestedPort int) {
	k, ok := keyOf(src, dst)
	rap, ok2 := sock.AddrPortOf(relayAddr)
	if !ok || !ok2 {
		return
	}
	if _, tcp := relayAddr.(*net.TCPAddr); tcp {
		s.onTCPAllocationCreated(k, rap, userID)
		return
	}
	s.mu.Lock()
	rc := s.relays[rap]
	s.mu.Unlock()
	if rc == nil {
		return
	}
	a := &allocation{Alloc: s.fast.NewAlloc(rc.Relay), rc: rc, family: familyOf(rap.Addr()), requests: s.newRequestBucket(),
		id: rc.seq<<16 | uint64(rap.Port()), user: userID, key: k}
	a.Local = rc.local
	_, isTCP := src.(*net.TCPAddr)
	g := s.lisByAddr[k.dst]
	switch {
	case !isTCP && g != nil:
		a.UDP = true
		a.transport = int(metrics.TransportUDP)
		a.Key = dataplane.Key{Lis: g.ID, Client: k.src}
		a.ClientRaw.Set(k.src)
	case s.tlsAddrs[k.dst]:
		a.transport = int(metrics.TransportTLS)
	default:
		a.transport = int(metrics.TransportTCP)
	}
	s.mu.Lock()
	s.allocs[k] = a
	s.mu.Unlock()
	if a.UDP {
		s.fast.Insert(a.Alloc)
	}
	rc.Relay.Alloc.Store(a.Alloc)
	rc.owner.Store(a)
	s.allocCount[a.transport][a.family].Add(1)
	if m := s.cfg.Metrics; m != nil {
		m.AllocationAttempt(metrics.AttemptOK)
	}
	s.logEvent("allocation created", slog.String("client", k.src.String()), slog.String("transport", metrics.Transport(a.transport).String()),
		slog.String("user", userID), slog.String("relay", rap.String()))
}

// logEvent logs one of the lines of an allocation's creation and end at Info: the same record
// as s.log.Info with the same key–value pairs, handed to the handler directly. Logger.Info
// walks the stack for the caller's pc (which no handler of ours prints: no AddSource) and
// boxes each value into an interface; at one line per allocation made and one per allocation
// ended, that was ~15 % of the lines' cost (server CPU profile during bench-control).
func (s *Server) logEvent(msg string, attrs ...slog.Attr) {
	h := s.log.Handler()
	ctx := context.Background()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, msg, 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r)
}

func (s *Server) onAllocationDeleted(src, dst net.Addr, protocol, userID, realm string) {
	k, ok := keyOf(src, dst)
	if !ok || s.onTCPAllocationDeleted(k, userID) {
		return
	}
	s.mu.Lock()
	a := s.allocs[k]
	delete(s.allocs, k)
	s.mu.Unlock()
	if a == nil {
		return
	}
	a.rc.owner.Store(nil)
	if a.UDP {
		s.fast.Remove(a.Alloc)
	}
	// pion removed permissions and channels first (with their events); clear what is left,
	// and whatever an event still in flight would add.
	perms, chans := s.fast.Clear(a.Alloc)
	s.permCount.Add(-int64(perms))
	s.chanCount.Add(-int64(chans))
	s.allocCount[a.transport][a.family].Add(-1)
	life := time.Since(a.rc.created)
	reason := endReason(a.rc.ending.Load())
	if m := s.cfg.Metrics; m != nil {
		m.AllocationEnded(life)
		m.AllocationEndedBy(reason.label())
	}
	s.noteEnded(k, reason) // mismatch.go
	s.logEvent("allocation deleted", slog.String("client", k.src.String()), slog.String("user", userID),
		slog.String("relay", a.rc.advertised.String()), slog.String("lifetime", life.Round(time.Millisecond).String()), slog.String("reason", reason.label()))
}
