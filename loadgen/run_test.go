package loadgen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/avedge/avedge/internal/testnet"
	"github.com/pion/turn/v5"
)

const testSecret = "loadgen-test-secret"

func restCredentials(t *testing.T, secret string) func(int) (string, string) {
	return func(int) (string, string) {
		u, p, err := turn.GenerateLongTermTURNRESTCredentials(secret, "loadgen", time.Hour)
		if err != nil {
			t.Error(err)
		}
		return u, p
	}
}

func checkConsistent(t *testing.T, rep Report) {
	t.Helper()
	if rep.Received > rep.Sent {
		t.Errorf("received %d > sent %d", rep.Received, rep.Sent)
	}
	if rep.Lost != rep.Sent-rep.Received {
		t.Errorf("lost %d, want sent-received = %d", rep.Lost, rep.Sent-rep.Received)
	}
	if rep.KernelDrops != rep.ClientKernelDrops+rep.PeerKernelDrops {
		t.Errorf("kernel drops %d, want client %d + peer %d", rep.KernelDrops, rep.ClientKernelDrops, rep.PeerKernelDrops)
	}
	p := rep.RTT
	if !(0 < p.P50 && p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.P999 && p.P999 <= p.Max) {
		t.Errorf("percentiles out of order: %+v", p)
	}
}

func TestRunModes(t *testing.T) {
	server := testnet.PionTURN(t, testSecret)
	tests := []struct {
		name    string
		mode    Mode
		clients int
		size    int
		// round trips relayed: packets the server forwarded per probe that came back
		relayedPerProbe uint64
	}{
		{"channel/audio", ModeChannel, 6, 160, 2},
		{"channel/video", ModeChannel, 2, 1200, 2},
		{"indication", ModeIndication, 4, 160, 2},
		{"pair", ModePair, 4, 160, 4},
		{"direct", ModeDirect, 3, 160, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const rate, duration = 50, 600 * time.Millisecond
			rep, err := Run(context.Background(), Config{
				Server: server, Mode: tt.mode, Clients: tt.clients, Rate: rate, Size: tt.size,
				Duration: duration, Drain: 2 * time.Second,
				Credentials: restCredentials(t, testSecret),
			})
			if err != nil {
				t.Fatal(err)
			}
			checkConsistent(t, rep)
			// Pacing is by absolute schedule: never more than one period early.
			maxSent := uint64(tt.clients) * (uint64(rate*duration/time.Second) + 2)
			if rep.SentPerSecond != float64(rep.Sent)/duration.Seconds() {
				t.Errorf("sent per second %v for %d sent in %s", rep.SentPerSecond, rep.Sent, duration)
			}
			if rep.Sent < uint64(tt.clients) || rep.Sent > maxSent {
				t.Errorf("sent %d, want %d..%d", rep.Sent, tt.clients, maxSent)
			}
			// Byte-exact both ways: every probe came back unaltered.
			if rep.Received != rep.Sent || rep.Corrupt != 0 || rep.SendErrors != 0 {
				t.Errorf("sent %d received %d corrupt %d send errors %d", rep.Sent, rep.Received, rep.Corrupt, rep.SendErrors)
			}
			// Every probe reached the echo peer (there is none in pair mode).
			wantPeer := rep.Sent
			if tt.mode == ModePair {
				wantPeer = 0
			}
			if rep.PeerReceived != wantPeer {
				t.Errorf("echo peers received %d, want %d", rep.PeerReceived, wantPeer)
			}
			if rep.Delivered != 2*rep.Received {
				t.Errorf("delivered %d, want 2×received = %d", rep.Delivered, 2*rep.Received)
			}
			if want := tt.relayedPerProbe * rep.Received; rep.Relayed != want {
				t.Errorf("relayed %d, want %d", rep.Relayed, want)
			}
		})
	}
}

func TestRunSaturate(t *testing.T) {
	server := testnet.PionTURN(t, testSecret)
	rep, err := Run(context.Background(), Config{
		Server: server, Clients: 1, Rate: 0, Size: 200, Window: 8,
		Duration: 300 * time.Millisecond, Drain: 2 * time.Second,
		Credentials: restCredentials(t, testSecret),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, rep)
	if rep.Sent <= 8 || rep.Corrupt != 0 {
		t.Errorf("sent %d corrupt %d: the window did not keep going", rep.Sent, rep.Corrupt)
	}
	if rep.Window != 8 {
		t.Errorf("window %d in report, want 8", rep.Window)
	}
}

func TestRunRefreshes(t *testing.T) {
	server := testnet.PionTURN(t, testSecret)
	for _, mode := range []Mode{ModeChannel, ModeIndication} {
		t.Run(string(mode), func(t *testing.T) {
			rep, err := Run(context.Background(), Config{
				Server: server, Mode: mode, Clients: 2, Rate: 20, Duration: 700 * time.Millisecond,
				RefreshInterval: 200 * time.Millisecond, Credentials: restCredentials(t, testSecret),
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Refreshes < 2 || rep.RefreshErrors != 0 {
				t.Errorf("refreshes %d errors %d, want ≥2 and 0", rep.Refreshes, rep.RefreshErrors)
			}
			if rep.Received != rep.Sent {
				t.Errorf("sent %d received %d across refreshes", rep.Sent, rep.Received)
			}
		})
	}
}

func TestRunServerCPU(t *testing.T) {
	server := testnet.PionTURN(t, testSecret) // in-process, so the server's pid is ours
	rep, err := Run(context.Background(), Config{
		Server: server, Clients: 4, Rate: 200, Duration: 500 * time.Millisecond,
		ServerPID: runtimePID(), Credentials: restCredentials(t, testSecret),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ServerCPUSeconds < 0 || rep.ServerCPUSeconds > 60 {
		t.Errorf("server cpu %v s", rep.ServerCPUSeconds)
	}
	if rep.ServerCPUSeconds > 0 && rep.RelayedPerCPUSecond != float64(rep.Relayed)/rep.ServerCPUSeconds {
		t.Errorf("relayed/cpu %v, want %v", rep.RelayedPerCPUSecond, float64(rep.Relayed)/rep.ServerCPUSeconds)
	}
}

func TestRunRejected(t *testing.T) {
	server := testnet.PionTURN(t, testSecret)
	_, err := Run(context.Background(), Config{
		Server: server, Clients: 1, Rate: 10, Duration: 100 * time.Millisecond,
		Credentials: restCredentials(t, "not-the-secret"),
	})
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
}

func TestRunTimeout(t *testing.T) {
	// A socket that never answers stands in for a dead server.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = Run(ctx, Config{
		Server: silent.LocalAddr().(*net.UDPAddr).AddrPort(), Clients: 1,
		Credentials: restCredentials(t, testSecret),
	})
	if err == nil {
		t.Fatal("run against a silent server succeeded")
	}
}

func TestRunNoLeaks(t *testing.T) {
	if _, err := Run(context.Background(), Config{Mode: ModeDirect, Clients: 8, Rate: 100, Duration: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	// Every goroutine Run started has been waited for, so none may still be
	// in this package's code (WaitGroup.Go ones may linger in goexit only).
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "loadgen.TestRunNoLeaks") {
			continue
		}
		if strings.Contains(g, "avedge/loadgen.") {
			t.Errorf("goroutine left running:\n%s", g)
		}
	}
}

func TestConfigBounds(t *testing.T) {
	ok := Config{Server: netip.MustParseAddrPort("127.0.0.1:3478"), Credentials: func(int) (string, string) { return "u", "p" }}
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"unknown mode", func(c *Config) { c.Mode = "multicast" }},
		{"too many clients", func(c *Config) { c.Clients = MaxClients + 1 }},
		{"odd pair", func(c *Config) { c.Mode, c.Clients = ModePair, 3 }},
		{"negative rate", func(c *Config) { c.Rate = -1 }},
		{"tiny payload", func(c *Config) { c.Size = MinSize - 1 }},
		{"huge payload", func(c *Config) { c.Size = MaxSize + 1 }},
		{"too long", func(c *Config) { c.Duration = MaxDuration + time.Second }},
		{"no server", func(c *Config) { c.Server = netip.AddrPort{} }},
		{"no credentials", func(c *Config) { c.Credentials = nil }},
		{"more groups than clients", func(c *Config) { c.Clients, c.Groups = 2, 3 }},
		{"IPv6 local address", func(c *Config) { c.Local = netip.IPv6Loopback() }},
	}
	if _, err := ok.withDefaults(); err != nil {
		t.Fatalf("baseline config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			if _, err := Run(context.Background(), c); !errors.Is(err, ErrBadConfig) {
				t.Errorf("err = %v, want ErrBadConfig", err)
			}
		})
	}
}
