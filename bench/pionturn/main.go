// Command pionturn is a plain pion/turn v5 server used as a baseline by
// scripts/bench-relay.sh: one UDP listener, relay ports from a range,
// TURN REST credentials from a static secret, every peer allowed. It takes
// the same coturn-named flags as cmd/avedge so the script can feed every
// server the same settings. It is a benchmark fixture, not a product.
//
// It is a module of its own (go.mod here), without the main module's replace of
// pion/turn by third_party/pion-turn, so that it measures pion/turn as released:
// build it with `cd bench/pionturn && go build .` (scripts/bench-lib.sh does).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/pion/turn/v5"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pionturn:", err)
		os.Exit(1)
	}
}

func run() error {
	listenIP := flag.String("listening-ip", "127.0.0.1", "address of the UDP listener")
	listenPort := flag.Int("listening-port", 3478, "port of the UDP listener")
	minPort := flag.Int("min-port", 50000, "lowest relay port")
	maxPort := flag.Int("max-port", 59999, "highest relay port")
	secret := flag.String("static-auth-secret", "", "TURN REST shared secret (required)")
	realm := flag.String("realm", "avedge", "authentication realm")
	relayIP := flag.String("relay-ip", "127.0.0.1", "address relay ports bind to and advertise")
	flag.Bool("allow-loopback-peers", true, "accepted for coturn compatibility; pion allows every peer")
	flag.Parse()

	if *secret == "" {
		return fmt.Errorf("--static-auth-secret is required")
	}
	if *minPort < 1 || *maxPort > 65535 || *minPort > *maxPort {
		return fmt.Errorf("bad relay port range %d-%d", *minPort, *maxPort)
	}
	rip := net.ParseIP(*relayIP)
	if rip == nil {
		return fmt.Errorf("bad --relay-ip %q", *relayIP)
	}

	addr := net.JoinHostPort(*listenIP, strconv.Itoa(*listenPort))
	pc, err := net.ListenPacket("udp4", addr) //nolint:noctx // a main, no context to carry
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}

	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:       *realm,
		AuthHandler: turn.LongTermTURNRESTAuthHandler(*secret, nil),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorPortRange{
				RelayAddress: rip,
				Address:      *relayIP,
				MinPort:      uint16(*minPort),
				MaxPort:      uint16(*maxPort),
			},
		}},
	})
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	slog.Info("pionturn listening", "addr", addr, "relay", *relayIP, "ports", fmt.Sprintf("%d-%d", *minPort, *maxPort))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs

	if err := srv.Close(); err != nil {
		return fmt.Errorf("close server: %w", err)
	}
	return nil
}
