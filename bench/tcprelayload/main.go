// Command tcprelayload measures a TURN server's RFC 6062 TCP relay for
// scripts/bench-tcp-relay.sh: it opens --flows TCP allocations (pion/turn's client, one
// control connection each, TURN REST credentials from --secret), connects each through the
// relay to a sink on loopback (Connect + ConnectionBind), writes as fast as the flows take
// for --duration, and prints one JSON line: the bytes the sink received in that window and
// the server process's CPU time over it (utime+stime of --server-pid), so bytes relayed per
// CPU-second. It is a benchmark fixture, not a product.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/avedge/avedge/auth"
	"github.com/avedge/avedge/loadgen"
)

type result struct {
	Flows         int     `json:"flows"`
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	ServerCPU     float64 `json:"server_cpu_seconds"`
	BytesPerCPU   float64 `json:"bytes_per_cpu_second"`
	MBitPerSecond float64 `json:"mbit_per_second"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tcprelayload:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("server", "127.0.0.1:3478", "TURN server, TCP")
	secret := flag.String("secret", "", "TURN REST shared secret (required)")
	realm := flag.String("realm", "avedge", "realm")
	flows := flag.Int("flows", 1, "TCP allocations, one relayed connection each (1–1000)")
	duration := flag.Duration("duration", 10*time.Second, "measurement window (at most 2m)")
	pid := flag.Int("server-pid", 0, "server process whose CPU time is measured (0: none)")
	flag.Parse()
	if *secret == "" {
		return errors.New("--secret is required")
	}
	if *flows < 1 || *flows > 1000 || *duration <= 0 || *duration > 2*time.Minute {
		return errors.New("--flows must be 1–1000 and --duration at most 2m")
	}

	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer sink.Close()
	var received atomic.Int64
	var wg sync.WaitGroup
	var peers sync.Map
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			peers.Store(c, struct{}{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					received.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	defer func() {
		sink.Close()
		peers.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	}()

	conns := make([]net.Conn, 0, *flows)
	var closers []io.Closer
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	}()
	for i := range *flows {
		ctl, err := net.DialTimeout("tcp", *server, 5*time.Second)
		if err != nil {
			return fmt.Errorf("flow %d: dial %s: %w", i, *server, err)
		}
		closers = append(closers, ctl)
		username, password := auth.MintREST([]byte(*secret), fmt.Sprintf("tcpbench%d", i), time.Now().Add(time.Hour))
		c, err := turn.NewClient(&turn.ClientConfig{
			STUNServerAddr: *server, TURNServerAddr: *server, Conn: turn.NewSTUNConn(ctl),
			Username: username, Password: password, Realm: *realm,
		})
		if err != nil {
			return err
		}
		closers = append(closers, closerFunc(func() error { c.Close(); return nil }))
		if err := c.Listen(); err != nil {
			return err
		}
		alloc, err := c.AllocateTCP()
		if err != nil {
			return fmt.Errorf("flow %d: AllocateTCP: %w", i, err)
		}
		closers = append(closers, alloc)
		conn, err := alloc.Dial("tcp", sink.Addr().String())
		if err != nil {
			return fmt.Errorf("flow %d: Dial through the relay: %w", i, err)
		}
		closers = append(closers, conn)
		conns = append(conns, conn)
	}

	cpu0, err := serverCPU(*pid)
	if err != nil {
		return err
	}
	start := time.Now()
	bytes0 := received.Load()
	end := start.Add(*duration)
	var writers sync.WaitGroup
	for _, c := range conns {
		writers.Add(1)
		go func() {
			defer writers.Done()
			buf := make([]byte, 64<<10)
			_ = c.SetWriteDeadline(end)
			for time.Now().Before(end) {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	writers.Wait()
	elapsed := time.Since(start)
	bytes := received.Load() - bytes0
	cpu1, err := serverCPU(*pid)
	if err != nil {
		return err
	}
	r := result{Flows: *flows, Seconds: elapsed.Seconds(), Bytes: bytes, ServerCPU: (cpu1 - cpu0).Seconds(),
		MBitPerSecond: float64(bytes) * 8 / elapsed.Seconds() / 1e6}
	if r.ServerCPU > 0 {
		r.BytesPerCPU = float64(bytes) / r.ServerCPU
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func serverCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	return loadgen.ProcessCPU(pid)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
