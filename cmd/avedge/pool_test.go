package main

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/avedge/avedge/pool"
	"github.com/avedge/avedge/relay"
)

// TestLoadDocument: the metrics listener serves GET /load, this relay's load document as
// bound: healthy, its port range, where clients reach it and the UDP address peers name in
// ALTERNATE-SERVER; a drain shows at once.
func TestLoadDocument(t *testing.T) {
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *relay.Server, 1)
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--data-path", "epoll", "--listening-port", "0", "--metrics-listen", "127.0.0.1:0", "--min-port", "32100", "--max-port", "32149",
			"--auth-listen", "", "--pool-zone", "eu-west-1a", "--pool-max-bps", "1e9"}, &stdout, &stderr, ready)
	}()
	defer func() {
		cancel()
		<-done
	}()
	var srv *relay.Server
	select {
	case srv = <-ready:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("not ready in 10s")
	}
	m := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("metrics address not logged:\n%s", stderr.String())
	}
	get := func() pool.Load {
		t.Helper()
		res, err := http.Get("http://" + m[1] + "/load")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /load: %s", res.Status)
		}
		l, err := pool.ParseLoad(res.Body)
		if err != nil {
			t.Fatalf("GET /load: %v", err)
		}
		return l
	}
	var udp string
	for _, l := range srv.Addrs() {
		if l.Network == relay.UDP {
			udp = l.Addr.String()
		}
	}
	l := get()
	if !l.Healthy || l.Draining || l.PortsTotal != 50 || l.PortsFree != 50 || l.Zone != "eu-west-1a" || l.MaxBPS != 1e9 || l.Version == "" {
		t.Fatalf("load document %+v", l)
	}
	if len(l.Relays) != 1 || l.Relays[0].HostName != "127.0.0.1" || "127.0.0.1:"+strconv.Itoa(l.Relays[0].UDPPort) != udp {
		t.Fatalf("relays %+v, want this relay at %s", l.Relays, udp)
	}
	if len(l.Alternates) != 1 || l.Alternates[0] != udp {
		t.Fatalf("alternates %v, want [%s]", l.Alternates, udp)
	}
	srv.Drain()
	if l := get(); l.Healthy || !l.Draining || l.Score() != 1 {
		t.Fatalf("draining relay's document %+v", l)
	}
}
