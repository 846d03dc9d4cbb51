package portalloc

import (
	crand "crypto/rand"
	"fmt"
)

// Token is a RESERVATION-TOKEN value: 8 bytes from crypto/rand. The zero
// Token is never issued.
type Token [8]byte

// AcquireEven holds a random even port P whose neighbour P+1 is free too,
// and reserves P+1 for the reservation TTL under a fresh token. bind is
// called for P only. The pair is drawn uniformly from the free pairs; when
// there is none, a pair whose ports are each free or quarantined is taken,
// oldest release first. ErrExhausted when no pair can be found.
//
// RFC 8656, Section 7.2 (the words of RFC 5766, Section 6.2):
//
//	If the request contains an EVEN-PORT attribute with the R bit set
//	to 1, then the server looks for a pair of port numbers N and N+1
//	on the same IP address, where N is even.  Port N is used in the
//	current allocation, while the relayed transport address with port
//	N+1 is assigned a token and reserved for a future allocation.  The
//	server MUST hold this reservation for at least 30 seconds, and MAY
//	choose to hold longer (e.g., until the allocation with port N
//	expires).  The server then includes the token in a RESERVATION-
//	TOKEN attribute in the success response.
func (a *Allocator) AcquireEven(bind func(port uint16) error) (uint16, Token, error) {
	for range a.n + 1 {
		a.mu.Lock()
		now := a.tickLocked(true)
		var p int32
		switch {
		case a.pairs.len() > 0:
			p = a.pairs.pick(a.rng)
		default:
			p = a.quarantinedPairLocked()
			if p < 0 {
				a.mu.Unlock()
				return 0, Token{}, ErrExhausted
			}
		}
		tok := a.newTokenLocked()
		a.moveLocked(p+1, stReserved, now+int64(a.reservationTTL))
		a.token[p+1] = tok
		a.byToken[tok] = p + 1
		port := a.port(p)
		if bind == nil {
			a.moveLocked(p, stHeld, 0)
			a.mu.Unlock()
			return port, tok, nil
		}
		a.moveLocked(p, stBinding, 0)
		a.mu.Unlock()

		err := a.finishBind(p, bind)
		if err == nil {
			return port, tok, nil
		}
		// P could not be bound: the reservation of P+1 goes back, unless it
		// already expired (and was perhaps handed out again) meanwhile.
		a.mu.Lock()
		if a.state[p+1] == stReserved && a.token[p+1] == tok {
			a.moveLocked(p+1, stFree, 0)
		}
		a.mu.Unlock()
		if !isForeign(err) {
			return 0, Token{}, err
		}
	}
	return 0, Token{}, ErrExhausted
}

// quarantinedPairLocked returns the even index of the pair, oldest
// quarantined release first, whose two ports are each free or quarantined;
// -1 if there is none. It runs only when no pair is wholly free, and walks
// the quarantine list once.
func (a *Allocator) quarantinedPairLocked() int32 {
	for i := a.quarantined.front(); i >= 0; i = a.quarantined.next(i) {
		p := a.pairBase(i)
		if p < 0 {
			continue
		}
		other := p
		if other == i {
			other = p + 1
		}
		if st := a.state[other]; st == stFree || st == stQuarantined {
			return p
		}
	}
	return -1
}

// newTokenLocked returns a fresh, non-zero token not currently in use.
func (a *Allocator) newTokenLocked() Token {
	for {
		var t Token
		_, _ = crand.Read(t[:]) // never fails since Go 1.24
		if _, taken := a.byToken[t]; !taken && t != (Token{}) {
			return t
		}
	}
}

// Redeem holds the port reserved under tok, calling bind like Acquire does.
// A token redeems once: after it was used, or after the reservation TTL,
// Redeem fails with ErrBadToken. The reservation is spent even if bind
// fails; the port then goes back to free (or to the foreign-port cooldown on
// EADDRINUSE / EACCES, with ErrInUse wrapped in the error).
//
// RFC 8656, Section 7.2 (the words of RFC 5766, Section 6.2):
//
//	Otherwise, it checks to see if the token is
//	valid (i.e., the token is in range and has not expired and the
//	corresponding relayed transport address is still available).  If
//	the token is not valid for some reason, the server rejects the
//	request with a 508 (Insufficient Capacity) error.
func (a *Allocator) Redeem(tok Token, bind func(port uint16) error) (uint16, error) {
	a.mu.Lock()
	a.tickLocked(false)
	i, ok := a.byToken[tok]
	if !ok {
		a.mu.Unlock()
		return 0, ErrBadToken
	}
	port := a.port(i)
	if err := a.redeemLocked(i, bind); err != nil {
		return 0, err
	}
	return port, nil
}

// RedeemPort is Redeem by port number, for callers (pion/turn) that keep the
// token themselves: it holds port only if it is currently reserved, and
// fails with ErrNotReserved otherwise.
func (a *Allocator) RedeemPort(port uint16, bind func(port uint16) error) error {
	if port < a.min || port > a.max {
		return fmt.Errorf("portalloc: port %d outside %d-%d: %w: %w", port, a.min, a.max, ErrOutOfRange, ErrNotReserved)
	}
	i := a.index(port)
	a.mu.Lock()
	a.tickLocked(false)
	if st := a.state[i]; st != stReserved {
		a.mu.Unlock()
		return fmt.Errorf("portalloc: port %d is %v: %w", port, st, ErrNotReserved)
	}
	return a.redeemLocked(i, bind)
}

// redeemLocked spends the reservation of index i and binds it. It is called
// with a.mu held and returns with it released.
func (a *Allocator) redeemLocked(i int32, bind func(port uint16) error) error {
	if bind == nil {
		a.moveLocked(i, stHeld, 0)
		a.mu.Unlock()
		return nil
	}
	a.moveLocked(i, stBinding, 0)
	a.mu.Unlock()
	return a.finishBind(i, bind)
}
