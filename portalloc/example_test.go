package portalloc_test

import (
	"errors"
	"fmt"
	"net"

	"github.com/avedge/avedge/portalloc"
)

func Example() {
	// The edge default is 50000-59999; this example binds real sockets on
	// loopback, so it uses a small range below the kernel's ephemeral ports.
	a, err := portalloc.New(31000, 31003)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The relay binds the socket in the callback; a port the kernel refuses
	// (another process holds it) is skipped.
	var conn *net.UDPConn
	bind := func(port uint16) error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
		conn = c
		return err
	}
	port, err := a.Acquire(bind)
	switch {
	case errors.Is(err, portalloc.ErrExhausted):
		fmt.Println("answer 508 Insufficient Capacity")
		return
	case err != nil:
		fmt.Println("answer 500:", err)
		return
	}
	fmt.Printf("%+v\n", a.Stats())
	conn.Close()
	a.Release(port) // rests in quarantine before it is handed out again
	fmt.Printf("%+v\n", a.Stats())
	// Output:
	// {Capacity:4 Free:3 Held:1 Reserved:0 Quarantined:0 Foreign:0}
	// {Capacity:4 Free:3 Held:0 Reserved:0 Quarantined:1 Foreign:0}
}

func ExampleAllocator_AcquireEven() {
	a, err := portalloc.New(50000, 50009)
	if err != nil {
		fmt.Println(err)
		return
	}
	rtp, tok, err := a.AcquireEven(nil) // EVEN-PORT with the R bit: P and P+1
	if err != nil {
		fmt.Println(err)
		return
	}
	// A later Allocate with RESERVATION-TOKEN gets P+1, once.
	rtcp, err := a.Redeem(tok, nil)
	fmt.Println(rtp%2 == 0, rtcp == rtp+1, err)
	_, err = a.Redeem(tok, nil)
	fmt.Println(err)
	// Output:
	// true true <nil>
	// portalloc: unknown, expired or used reservation token
}
