package loadgen

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"
)

// Mode selects how clients exchange packets.
type Mode string

// The modes; see the package documentation.
const (
	ModeChannel    Mode = "channel"
	ModeIndication Mode = "indication"
	ModePair       Mode = "pair"
	ModeDirect     Mode = "direct"
)

// Bounds on a run.
const (
	MaxClients  = 5000
	MaxDuration = 10 * time.Minute
	MaxRate     = 100000
	MaxWindow   = 1024
)

// Config describes one run. Zero values are documented per field.
type Config struct {
	// Server is the TURN server's UDP address. Unused in ModeDirect.
	Server netip.AddrPort
	// Local is the IPv4 address the clients' sockets and the echo peers bind to; zero means
	// 127.0.0.1. An address of a veth lets a relay in another network namespace reach the
	// peers, as it would across a network.
	Local netip.Addr
	// Mode is the exchange; zero means ModeChannel.
	Mode Mode
	// Clients is the number of simulated clients, 1..MaxClients; zero means 1.
	// ModePair needs an even number.
	Clients int
	// Rate is packets per second per client; zero saturates: each client
	// keeps Window packets in flight for the whole run.
	Rate int
	// Size is the payload size in bytes, MinSize..MaxSize; zero means 160.
	Size int
	// Duration is the send window, up to MaxDuration; zero means 10s.
	Duration time.Duration
	// Window is the packets in flight per client when Rate is zero; zero means 32.
	Window int
	// Credentials returns the long-term username and password of a client.
	// Required unless Mode is ModeDirect.
	Credentials func(client int) (username, password string)
	// ServerPID, if not zero, is the process whose CPU time over the
	// measurement window is reported (utime+stime from /proc/PID/stat).
	ServerPID int
	// Drain is how long to wait for packets in flight after the send
	// window; zero means 1s.
	Drain time.Duration
	// RefreshInterval is how often allocations, permissions and channels
	// are refreshed during the run; zero means 2 minutes.
	RefreshInterval time.Duration
	// Groups is the number of pacing groups clients are spread over, each
	// with its own echo peer; zero means min(Clients, GOMAXPROCS).
	Groups int
	// Progress, if set, is called about once a second during the send window.
	Progress func(Progress)
	// Logger receives setup and refresh events; nil discards them.
	Logger *slog.Logger
}

// Progress is a snapshot during a run.
type Progress struct {
	Elapsed  time.Duration
	Sent     uint64
	Received uint64
}

// withDefaults returns c with zero values filled in, or ErrBadConfig.
func (c Config) withDefaults() (Config, error) {
	if c.Mode == "" {
		c.Mode = ModeChannel
	}
	if c.Clients == 0 {
		c.Clients = 1
	}
	if c.Size == 0 {
		c.Size = 160
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Window == 0 {
		c.Window = 32
	}
	if c.Drain == 0 {
		c.Drain = time.Second
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 2 * time.Minute
	}
	if c.Groups == 0 {
		c.Groups = min(c.Clients, runtime.GOMAXPROCS(0))
	}
	if !c.Local.IsValid() {
		c.Local = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Mode != ModeChannel && c.Mode != ModeIndication && c.Mode != ModePair && c.Mode != ModeDirect:
		return c, fmt.Errorf("%w: unknown mode %q", ErrBadConfig, c.Mode)
	case c.Clients < 1 || c.Clients > MaxClients:
		return c, fmt.Errorf("%w: clients %d not in 1..%d", ErrBadConfig, c.Clients, MaxClients)
	case c.Mode == ModePair && c.Clients%2 != 0:
		return c, fmt.Errorf("%w: pair mode needs an even number of clients, not %d", ErrBadConfig, c.Clients)
	case c.Rate < 0 || c.Rate > MaxRate:
		return c, fmt.Errorf("%w: rate %d not in 0..%d", ErrBadConfig, c.Rate, MaxRate)
	case c.Size < MinSize || c.Size > MaxSize:
		return c, fmt.Errorf("%w: size %d not in %d..%d", ErrBadConfig, c.Size, MinSize, MaxSize)
	case c.Duration < 0 || c.Duration > MaxDuration:
		return c, fmt.Errorf("%w: duration %s not in 0..%s", ErrBadConfig, c.Duration, MaxDuration)
	case c.Window < 1 || c.Window > MaxWindow:
		return c, fmt.Errorf("%w: window %d not in 1..%d", ErrBadConfig, c.Window, MaxWindow)
	case c.Drain < 0 || c.Drain > time.Minute:
		return c, fmt.Errorf("%w: drain %s not in 0..1m", ErrBadConfig, c.Drain)
	case c.RefreshInterval < 0:
		return c, fmt.Errorf("%w: refresh interval %s is negative", ErrBadConfig, c.RefreshInterval)
	case c.Groups < 1 || c.Groups > c.Clients:
		return c, fmt.Errorf("%w: groups %d not in 1..%d", ErrBadConfig, c.Groups, c.Clients)
	case !c.Local.Is4():
		return c, fmt.Errorf("%w: local address %s is not IPv4", ErrBadConfig, c.Local)
	case c.Mode != ModeDirect && !c.Server.IsValid():
		return c, fmt.Errorf("%w: no server address", ErrBadConfig)
	case c.Mode != ModeDirect && c.Credentials == nil:
		return c, fmt.Errorf("%w: no credentials", ErrBadConfig)
	}
	return c, nil
}
