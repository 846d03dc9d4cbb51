//go:build linux

package relay

import (
	"net"
	"net/netip"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/metrics"
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
				m.AuthFailure("forged")
				if method == "Allocate" {
					m.AllocationAttempt("auth")
				}
			}
			s.log.Info("authentication failed", "client", src.String(), "method", method, "reason", "forged")
		},
		OnAllocationCreated: s.onAllocationCreated,
		OnAllocationDeleted: s.onAllocationDeleted,
		OnPermissionCreated: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			ip, ok := netip.AddrFromSlice(peer)
			if !ok {
				return
			}
			ip = ip.Unmap()
			s.withAlloc(src, dst, func(a *fastAlloc) {
				s.fast.updateLocked(a, func(st *allocState) {
					for _, p := range st.perms {
						if p == ip {
							return
						}
					}
					st.perms = append(st.perms, ip)
					s.permCount.Add(1)
				})
			})
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			ip, ok := netip.AddrFromSlice(peer)
			if !ok {
				return
			}
			ip = ip.Unmap()
			s.withAlloc(src, dst, func(a *fastAlloc) {
				s.fast.updateLocked(a, func(st *allocState) {
					for i, p := range st.perms {
						if p == ip {
							st.perms = append(st.perms[:i], st.perms[i+1:]...)
							s.permCount.Add(-1)
							return
						}
					}
				})
			})
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, num uint16) {
			ap, ok := sock.AddrPortOf(peer)
			if !ok {
				return
			}
			c := &fastChan{num: num, peer: ap, refused: !s.peerPortOK(ap)}
			c.raw.Set(ap)
			s.withAlloc(src, dst, func(a *fastAlloc) {
				s.fast.updateLocked(a, func(st *allocState) {
					st.chans = append(st.chans, c)
					s.chanCount.Add(1)
				})
			})
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, _, _ net.Addr, num uint16) {
			s.withAlloc(src, dst, func(a *fastAlloc) {
				s.fast.updateLocked(a, func(st *allocState) {
					for i, c := range st.chans {
						if c.num == num {
							st.chans = append(st.chans[:i], st.chans[i+1:]...)
							s.chanCount.Add(-1)
							return
						}
					}
				})
			})
		},
	}
}

func keyOf(src, dst net.Addr) (allocKey, bool) {
	s, ok1 := sock.AddrPortOf(src)
	d, ok2 := sock.AddrPortOf(dst)
	return allocKey{src: s, dst: d}, ok1 && ok2
}

// withAlloc runs f with the allocation of the 5-tuple, holding the table's write lock.
func (s *Server) withAlloc(src, dst net.Addr, f func(a *fastAlloc)) {
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
	s.fast.mu.Lock()
	defer s.fast.mu.Unlock()
	f(a)
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
	a := &fastAlloc{relay: rc, userID: userID, family: familyOf(rap.Addr())}
	a.state.Store(&allocState{})
	_, isTCP := src.(*net.TCPAddr)
	g := s.lisByAddr[k.dst]
	switch {
	case !isTCP && g != nil:
		a.udp = true
		a.transport = int(metrics.TransportUDP)
		a.key = fastKey{lis: g.id, client: k.src}
		a.clientRaw.Set(k.src)
	case s.tlsAddrs[k.dst]:
		a.transport = int(metrics.TransportTLS)
	default:
		a.transport = int(metrics.TransportTCP)
	}
	s.mu.Lock()
	s.allocs[k] = a
	s.mu.Unlock()
	if a.udp {
		s.fast.insert(a)
	}
	rc.fa.Store(a)
	s.allocCount[a.transport][a.family].Add(1)
	if m := s.cfg.Metrics; m != nil {
		m.AllocationAttempt("ok")
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
	if a.udp {
		s.fast.remove(a.key)
	}
	// pion removed permissions and channels first (with their events); clear what is left.
	s.fast.update(a, func(st *allocState) {
		s.permCount.Add(-int64(len(st.perms)))
		s.chanCount.Add(-int64(len(st.chans)))
		st.perms, st.chans = nil, nil
	})
	s.allocCount[a.transport][a.family].Add(-1)
	life := time.Since(a.relay.created)
	if m := s.cfg.Metrics; m != nil {
		m.AllocationEnded(life)
	}
	s.log.Info("allocation deleted", "client", k.src.String(), "user", userID,
		"relay", a.relay.advertised.String(), "lifetime", life.Round(time.Millisecond).String())
}
