//go:build linux

package relay

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/metrics"
)

// TestInteropCoturnUclientTCPRelay runs coturn's client in its RFC 6062 mode (-T: TCP
// allocations over TURN-TCP, client to client, so that each client's peer is another
// client's relayed address on this relay: Connect on one side, ConnectionAttempt on the
// other, ConnectionBind on both). The assertion is correctness: nothing lost, and every
// byte counted once each way on the TCP path. uclient's passive mode (-P) is not run: it loses
// half its messages against coturn's own turnserver too (coturn 4.6.1, measured with -m 1
// and -m 2), so it cannot tell a relay's fault from its own.
func TestInteropCoturnUclientTCPRelay(t *testing.T) {
	bin := coturnTool(t, "turnutils_uclient")
	const clients, msgs, length = 2, 50, 120
	username, password := auth.MintREST(testSecret, "coturn", time.Now().Add(time.Hour))
	type run struct {
		name  string
		flags []string
		srv   *Server
		done  <-chan uclientRun
	}
	runs := []*run{
		{name: "connect", flags: []string{"-T"}},
		{name: "connect 4 clients", flags: []string{"-T"}},
	}
	for i, r := range runs {
		base := uint16(27000 + 1000*i)
		r.srv = startServer(t, func(c *Config) { c.MinPort, c.MaxPort = base, base+999 })
		_, port, _ := net.SplitHostPort(r.srv.addrOf(TCP))
		m := clients
		if i == 1 {
			m = 2 * clients
		}
		args := append(append([]string{}, r.flags...),
			"-u", username, "-w", password,
			"-n", strconv.Itoa(msgs), "-l", strconv.Itoa(length), "-m", strconv.Itoa(m),
			"-z", "5", "-p", port, "127.0.0.1")
		r.done = startUclient(bin, args...)
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			res := <-r.done
			if res.err != nil {
				t.Fatalf("%v; output:\n%s", res.err, res.out)
			}
			rep := parseUclient(res.out)
			if !rep.found {
				t.Fatalf("no \"Total lost packets\" line in turnutils_uclient output:\n%s", res.out)
			}
			if rep.lost != 0 || rep.sent == 0 || rep.received != rep.sent {
				t.Fatalf("turnutils_uclient: sent %d, received %d, lost %d; want all back\n%s", rep.sent, rep.received, rep.lost, res.out)
			}
			st := r.srv.Stats()
			for dir := metrics.ClientToPeer; dir <= metrics.PeerToClient; dir++ {
				// Each message crosses the relay once from a client to its peer (another
				// client's relayed address) and once from that peer to the other client.
				if got := st.Traffic[dir][metrics.PathTCP].Bytes; got != uint64(rep.sent*length) {
					t.Errorf("%s tcp bytes %d, want %d", dir, got, rep.sent*length)
				}
			}
			t.Logf("sent %d, received %d; tcp bytes %d / %d", rep.sent, rep.received,
				st.Traffic[metrics.ClientToPeer][metrics.PathTCP].Bytes, st.Traffic[metrics.PeerToClient][metrics.PathTCP].Bytes)
		})
	}
}
