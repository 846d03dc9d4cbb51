//go:build linux

package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/metrics"
	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
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
			if !ok {
				return
			}
			ip = ip.Unmap()
			s.updateAlloc(src, dst, func(st *dataplane.AllocState) {
				for _, p := range st.Perms {
					if p == ip {
						return
					}
				}
				st.Perms = append(st.Perms, ip)
				s.permCount.Add(1)
			})
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			ip, ok := netip.AddrFromSlice(peer)
			if !ok {
				return
			}
			ip = ip.Unmap()
			s.updateAlloc(src, dst, func(st *dataplane.AllocState) {
				for i, p := range st.Perms {
					if p == ip {
						st.Perms = append(st.Perms[:i], st.Perms[i+1:]...)
						s.permCount.Add(-1)
						return
					}
				}
			})
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, num uint16) {
			ap, ok := sock.AddrPortOf(peer)
			if !ok {
				return
			}
			c := &dataplane.Chan{Num: num, Peer: ap, Refused: !s.peerPortOK(ap)}
			c.Raw.Set(ap)
			s.updateAlloc(src, dst, func(st *dataplane.AllocState) {
				st.Chans = append(st.Chans, c)
				s.chanCount.Add(1)
			})
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, _, _ net.Addr, num uint16) {
			s.updateAlloc(src, dst, func(st *dataplane.AllocState) {
				for i, c := range st.Chans {
					if c.Num == num {
						st.Chans = append(st.Chans[:i], st.Chans[i+1:]...)
						s.chanCount.Add(-1)
						return
					}
				}
			})
		},
	}
}

// allocation is one live allocation: the workers' view of it, its relay socket, and what
// the gauges count it under. Static after construction (its data-plane state changes
// through Table.Update).
type allocation struct {
	*dataplane.Alloc
	rc        *relayConn
	family    int // metrics family index
	transport int // metrics transport index
}

func keyOf(src, dst net.Addr) (allocKey, bool) {
	s, ok1 := sock.AddrPortOf(src)
	d, ok2 := sock.AddrPortOf(dst)
	return allocKey{src: s, dst: d}, ok1 && ok2
}

// updateAlloc applies f to the state of the allocation of the 5-tuple, if there is one
// (Table.Update: under the table's lock, taken after s.mu is released).
func (s *Server) updateAlloc(src, dst net.Addr, f func(st *dataplane.AllocState)) {
	k, ok := keyOf(src, dst)
	if !ok {
		return
	}
	s.mu.Lock()
	a := s.allocs[k]
	s.mu.Unlock()
	if a == nil {
		return
	}
	s.fast.Update(a.Alloc, f)
}

func (s *Server) onAllocationCreated(src, dst net.Addr, protocol, userID, realm string, relayAddr net.Addr, requestedPort int) {
	k, ok := keyOf(src, dst)
	rap, ok2 := sock.AddrPortOf(relayAddr)
	if !ok || !ok2 {
		return
	}
	s.mu.Lock()
	rc := s.relays[rap]
	s.mu.Unlock()
	if rc == nil {
		return
	}
	a := &allocation{Alloc: dataplane.NewAlloc(rc.Relay), rc: rc, family: familyOf(rap.Addr())}
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
	s.allocCount[a.transport][a.family].Add(1)
	if m := s.cfg.Metrics; m != nil {
		m.AllocationAttempt(metrics.AttemptOK)
	}
	s.log.Info("allocation created", "client", k.src.String(), "transport", metrics.Transport(a.transport).String(),
		"user", userID, "relay", rap.String())
}

func (s *Server) onAllocationDeleted(src, dst net.Addr, protocol, userID, realm string) {
	k, ok := keyOf(src, dst)
	if !ok {
		return
	}
	s.mu.Lock()
	a := s.allocs[k]
	delete(s.allocs, k)
	s.mu.Unlock()
	if a == nil {
		return
	}
	if a.UDP {
		s.fast.Remove(a.Key)
	}
	// pion removed permissions and channels first (with their events); clear what is left.
	s.fast.Update(a.Alloc, func(st *dataplane.AllocState) {
		s.permCount.Add(-int64(len(st.Perms)))
		s.chanCount.Add(-int64(len(st.Chans)))
		st.Perms, st.Chans = nil, nil
	})
	s.allocCount[a.transport][a.family].Add(-1)
	life := time.Since(a.rc.created)
	if m := s.cfg.Metrics; m != nil {
		m.AllocationEnded(life)
	}
	s.log.Info("allocation deleted", "client", k.src.String(), "user", userID,
		"relay", a.rc.advertised.String(), "lifetime", life.Round(time.Millisecond).String())
}
