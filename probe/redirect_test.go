package probe

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// redirector answers every Allocate request with 300 (Try Alternate) naming to().
func redirector(t *testing.T, to func() *net.UDPAddr) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			res := stun.MustBuild(&stun.Message{TransactionID: req.TransactionID},
				stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeTryAlternate},
				&stun.AlternateServer{IP: to().IP, Port: to().Port}, stun.Fingerprint)
			_, _ = pc.WriteToUDP(res.Raw, from)
		}
	}()
	return pc
}

func TestFollowRedirects(t *testing.T) {
	ctx := context.Background()
	// final does not answer 300 (a 400 to anything): where the redirect leads.
	final, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer final.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := final.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			res := stun.MustBuild(&stun.Message{TransactionID: req.TransactionID},
				stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized})
			_, _ = final.WriteToUDP(res.Raw, from)
		}
	}()
	finalAddr := final.LocalAddr().(*net.UDPAddr)

	t.Run("followed", func(t *testing.T) {
		r := redirector(t, func() *net.UDPAddr { return finalAddr })
		urls := mustURLs(t, "turn:"+r.LocalAddr().String()+"?transport=udp", "turn:"+r.LocalAddr().String()+"?transport=tcp")
		got, hops, err := followRedirects(ctx, urls, 2*time.Second)
		if err != nil {
			t.Fatalf("followRedirects: %v", err)
		}
		if got[0].Host != "127.0.0.1" || got[0].Port != finalAddr.Port || got[0].Proto != stun.ProtoTypeUDP {
			t.Fatalf("followed to %s, want %s", got[0], finalAddr)
		}
		if got[1] != urls[1] || len(hops) != 1 {
			t.Fatalf("TCP URL %s (want unchanged), redirects %v (want one)", got[1], hops)
		}
	})

	t.Run("loop refused", func(t *testing.T) {
		var b atomic.Pointer[net.UDPConn]
		a := redirector(t, func() *net.UDPAddr { return b.Load().LocalAddr().(*net.UDPAddr) })
		b.Store(redirector(t, func() *net.UDPAddr { return a.LocalAddr().(*net.UDPAddr) }))
		// a -> b -> a: the client sent this request to a already.
		_, hops, err := followRedirects(ctx, mustURLs(t, "turn:"+a.LocalAddr().String()+"?transport=udp"), 2*time.Second)
		if !errors.Is(err, ErrConnectivity) {
			t.Fatalf("followRedirects = %v (after %v), want ErrConnectivity", err, hops)
		}
	})
}
