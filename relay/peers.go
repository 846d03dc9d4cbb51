//go:build linux

package relay

import (
	"net"
	"net/netip"

	"github.com/avedge/avedge/relay/internal/dataplane"
	"github.com/avedge/avedge/relay/internal/sock"
	"github.com/avedge/avedge/relay/policy"
)

// permit is pion's PermissionHandler: the peer policy, applied to CreatePermission and
// ChannelBind (and so to Send indications, which need a permission).
//
// RFC 8656 §21 (Security Considerations) leaves it to the server operator which peers may be
// reached; "the server MAY ... restrict ... to a set of allowed peers". A 403 is returned for
// a refused one.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	if r := s.peers.Load().Check(ip.Unmap()); r != policy.Allowed {
		s.slowStats.Drop(dataplane.DropPolicy)
		s.logInput(string(r), "peer refused by policy", "client", client.String(), "peer", ip.String())
		return false
	}
	return true
}

// SetPeerPolicy replaces the peer policy (reload). New CreatePermission and ChannelBind
// requests are checked against p, and so are the permissions already granted: a peer the new
// policy refuses stops relaying at once, both ways and on every path (a channel, Send and
// Data indications, TCP clients), and relays again after a reload that allows it, while pion
// keeps the permission until it expires. The TCP relay connections (RFC 6062) of a peer it
// refuses are closed.
//
// The host's own addresses are read again from the kernel each time (routes of type local:
// every interface, secondary and virtual address), so a reload also picks up an address
// added since the start. They are refused as peers (a client must not reach a service on
// the relay's host through the relay), except the relay's own relayed addresses, whose
// ports peerPortOK checks per packet. When they cannot be read, only those addresses and
// the built-in ranges are known, and that is logged.
func (s *Server) SetPeerPolicy(p PeerPolicy) {
	local, err := sock.LocalPrefixes()
	if err != nil {
		s.log.Warn("cannot read the host's own addresses; peers on them are not refused unless the built-in ranges or denied-peer-ip cover them", "err", err)
	}
	pol := policy.New(policy.Config{
		AllowLoopback: p.AllowLoopback, Allow: p.Allow, Deny: p.Deny,
		Local: local, Own: s.ownIPs,
	})
	s.peers.Store(pol)
	s.mu.Lock()
	live := make([]*allocation, 0, len(s.allocs))
	for _, a := range s.allocs {
		live = append(live, a)
	}
	s.mu.Unlock()
	allowed := func(ip netip.Addr) bool { return pol.Check(ip) == policy.Allowed }
	refused := 0
	for _, a := range live {
		refused += s.fast.Recheck(a.Alloc, allowed)
	}
	refused += s.closeRefusedTCPPeers(pol)
	if refused > 0 {
		s.log.Info("peer policy reloaded: granted permissions it refuses stop relaying", "permissions", refused)
	}
}

func newRateLimit(perSecond float64) *policy.Limiter {
	if perSecond < 0 {
		return nil
	}
	return policy.NewLimiter(perSecond, int(perSecond*5)+1, 65536)
}

// peerPortOK reports whether a client may send to peer. A peer on one of the relay's own
// addresses must be a relay port of the edge range (another allocation's relayed address);
// in the all-loopback setup, where every peer shares the address, anything but our own
// listeners. This keeps a client from looping requests into the relay's own services.
func (s *Server) peerPortOK(peer netip.AddrPort) bool {
	ip := peer.Addr().Unmap()
	own := false
	for _, o := range s.ownIPs {
		if o == ip {
			own = true
			break
		}
	}
	if !own && !ip.IsLoopback() {
		return true
	}
	port := peer.Port()
	if port >= s.cfg.MinPort && port <= s.cfg.MaxPort {
		return true
	}
	if !s.cfg.Peers.AllowLoopback {
		return !own
	}
	for _, g := range s.listeners {
		if g.addr.Port() == port {
			return false
		}
	}
	for _, ln := range s.streams {
		if ap, ok := sock.AddrPortOf(ln.Addr()); ok && ap.Port() == port {
			return false
		}
	}
	return true
}
