//go:build linux

package kfast

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/avedge/avedge/internal/nsguard"
)

// DropReason is why the program dropped a packet; its string is the relay's drop label.
type DropReason uint32

// Drop reasons, in the program's order (enum drop_reason in bpf/kfast.c).
const (
	DropNoPermission DropReason = iota // bound channel, the peer IP's permission gone
	DropMalformed                      // ChannelData longer than its datagram
	DropQuota                          // over the allocation's bandwidth cap
	NumDrops
)

// PassReason is why the program left a packet to the stack (and user space).
type PassReason uint32

// Pass reasons, in the program's order (enum pass_reason in bpf/kfast.c).
const (
	PassNoEntry   PassReason = iota // UDP no entry names
	PassFragment                    // IPv4 fragment, IPv6 extension header
	PassIPOptions                   // IPv4 options
	PassFamily                      // entry across families
	PassPadding                     // more than 3 bytes after the ChannelData data
	PassMTU                         // too large for the egress MTU with the header added
	PassNoRoute                     // no direct route or no neighbour entry yet
	PassCsum                        // IPv6 datagram without UDP checksum
	NumPasses
)

var passNames = [NumPasses]string{"no_entry", "fragment", "ip_options", "family", "padding", "mtu", "no_route", "checksum"}

// String names the reason.
func (r PassReason) String() string { return passNames[r] }

// Mode is how the program is attached to an interface.
type Mode uint8

// Attach modes.
const (
	ModeAuto    Mode = iota // native XDP where the driver has it, else generic
	ModeNative              // XDP in the driver (veth, most 10G+ NICs)
	ModeGeneric             // XDP on the kernel's skb path: any interface, slower
	ModeTCX                 // the tc variant on tcx ingress: loopback (XDP cannot serve lo)
)

func (m Mode) String() string {
	return [...]string{"auto", "native", "generic", "tcx"}[m]
}

// DefaultSlots is the number of allocation slots when Config.Slots is zero.
const DefaultSlots = 65536

// Config is what New needs. The zero value is a valid configuration.
type Config struct {
	// Gateway sends every relayed packet back to the link address it came from (swapping the
	// Ethernet addresses, XDP_TX), right only where every client and peer is reached through
	// one gateway. False (the zero value): the next hop comes from the kernel's routing table
	// and neighbours, which needs forwarding enabled on the interfaces the program is
	// attached to (Forwarding); without it every packet goes to user space (PassNoRoute).
	Gateway bool
	// FullChecksum computes each relayed datagram's UDP checksum from scratch, reading its
	// data, instead of updating the arriving checksum. Needed where senders on the same host
	// reach the relay over a veth: their datagrams arrive with the checksum not yet computed
	// (the kernel leaves it to a NIC that a veth does not have), which an update would carry
	// over. Datagrams with more than 1536 bytes of data then go to user space.
	FullChecksum bool
	// MTU bounds the IP packets Gateway mode sends (larger ones go to user space). Zero: 1500.
	// Routing-table mode takes the route's MTU.
	MTU int
	// Slots bounds the allocations that can be offloaded at once (each has a slot of per-CPU
	// counters), and the channels and permissions likewise. Zero: DefaultSlots.
	Slots int
}

// Offload is the loaded program and its maps. Its methods may be called from any goroutine.
type Offload struct {
	objs  kfastObjects // Static after New.
	slots int          // Static after New.

	mu    sync.Mutex
	links map[ifKey]link.Link // Guarded by mu.
	free  []uint32            // freed slots. Guarded by mu.
	next  uint32              // slots below next were handed out once. Guarded by mu.
}

// New loads the program and its maps into the kernel. It attaches nothing. When BPF is not
// available to this process it returns an error wrapping ErrUnavailable that says why.
func New(cfg Config) (*Offload, error) {
	n := cfg.Slots
	if n <= 0 {
		n = DefaultSlots
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: raise RLIMIT_MEMLOCK: %v", ErrUnavailable, err)
	}
	spec, err := loadKfast()
	if err != nil {
		return nil, fmt.Errorf("kfast: parse program: %w", err)
	}
	for _, m := range []string{"c2p", "p2c", "perms", "stats", "buckets"} {
		spec.Maps[m].MaxEntries = uint32(n)
	}
	mtu := cfg.MTU
	if mtu <= 0 {
		mtu = 1500
	}
	if err := spec.Variables["gateway"].Set(cfg.Gateway); err != nil {
		return nil, fmt.Errorf("kfast: set gateway: %w", err)
	}
	if err := spec.Variables["full_csum"].Set(cfg.FullChecksum); err != nil {
		return nil, fmt.Errorf("kfast: set full_csum: %w", err)
	}
	if err := spec.Variables["mtu"].Set(uint16(mtu)); err != nil {
		return nil, fmt.Errorf("kfast: set mtu: %w", err)
	}
	o := &Offload{slots: n, links: map[ifKey]link.Link{}}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kfast: the verifier refused the program: %w", err)
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSYS) || errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("%w (needs CAP_BPF and CAP_NET_ADMIN, or root, and BPF enabled): %v", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("kfast: load program: %w", err)
	}
	return o, nil
}

// Attach hooks the relay program to interface ifindex (of the calling thread's network
// namespace) in mode m (ModeAuto: native, else
// generic; ModeTCX: the tc variant, for loopback) and returns the mode it got. Attaching to
// an interface already attached replaces nothing and returns an error.
func (o *Offload) Attach(ifindex int, m Mode) (Mode, error) {
	if m == ModeTCX {
		return o.attach(o.objs.AvedgeRelayTc, ifindex, m)
	}
	return o.attach(o.objs.AvedgeRelay, ifindex, m)
}

// AttachPass hooks a program that passes everything to interface ifindex: on the far end of a
// veth pair, it gives that end the NAPI context that XDP_TX and redirects into it need.
func (o *Offload) AttachPass(ifindex int, m Mode) (Mode, error) {
	return o.attach(o.objs.AvedgePass, ifindex, m)
}

// ifKey names an interface: its index in a network namespace (the namespace's inode number).
type ifKey struct {
	ns      uint64
	ifindex int
}

// thisNS returns the inode of the calling thread's network namespace.
func thisNS() uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0
	}
	return st.Ino
}

func (o *Offload) attach(p *ebpf.Program, ifindex int, m Mode) (Mode, error) {
	// A test suite that armed the guard attaches only in namespaces its tests made: a test that
	// got here in the namespace the suite started in (the host's own, under make test as root)
	// would put this program on the host's interfaces. Fail the run there and then.
	if err := nsguard.Check("kfast: attach to " + ifName(ifindex)); err != nil {
		panic(err)
	}
	k := ifKey{thisNS(), ifindex}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.links[k]; ok {
		return 0, fmt.Errorf("kfast: interface %d: already attached", ifindex)
	}
	try := []Mode{m}
	if m == ModeAuto {
		try = []Mode{ModeNative, ModeGeneric}
	}
	var errs []error
	for _, t := range try {
		if t == ModeTCX {
			l, err := link.AttachTCX(link.TCXOptions{Program: p, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return 0, fmt.Errorf("kfast: attach to %s: tcx ingress: %w", ifName(ifindex), err)
			}
			o.links[k] = l
			return t, nil
		}
		flags := link.XDPDriverMode
		if t == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: p, Interface: ifindex, Flags: flags})
		if err == nil {
			o.links[k] = l
			return t, nil
		}
		errs = append(errs, fmt.Errorf("%v XDP: %w", t, err))
	}
	return 0, fmt.Errorf("kfast: attach to %s: %w", ifName(ifindex), errors.Join(errs...))
}

// Detach unhooks the program from interface ifindex (of the calling thread's network
// namespace), if it is attached there.
func (o *Offload) Detach(ifindex int) error {
	k := ifKey{thisNS(), ifindex}
	o.mu.Lock()
	l, ok := o.links[k]
	delete(o.links, k)
	o.mu.Unlock()
	if !ok {
		return nil
	}
	return l.Close()
}

// Close detaches the program from every interface and frees the program and maps.
func (o *Offload) Close() error {
	o.mu.Lock()
	links := o.links
	o.links = map[ifKey]link.Link{}
	o.mu.Unlock()
	var errs []error
	for _, l := range links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, o.objs.Close())
	return errors.Join(errs...)
}

// Forwarding reports whether IPv4 and IPv6 forwarding are enabled on interface name (in this
// thread's network namespace): routing-table mode needs them for the family it relays.
func Forwarding(name string) (v4, v6 bool) {
	read := func(p string) bool {
		b, err := os.ReadFile(p)
		return err == nil && len(b) > 0 && b[0] == '1'
	}
	return read("/proc/sys/net/ipv4/conf/" + name + "/forwarding"), read("/proc/sys/net/ipv6/conf/" + name + "/forwarding")
}

// Driver returns the driver of interface name (in this thread's network namespace), as
// `ethtool -i` shows it ("veth", "virtio_net", …), or "" if it cannot be read.
func Driver(name string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.Driver[:])
}

func ifName(ifindex int) string {
	if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
		return ifi.Name
	}
	return fmt.Sprintf("interface %d", ifindex)
}

// NewSlot returns a free allocation slot with its counters at zero and a bandwidth cap of
// bytesPerSecond in both directions together, with bursts of one second's worth (0:
// unlimited), as the user-space loops cap an allocation. The kernel's bucket is its own:
// packets of the allocation that take the user-space path spend the user-space one.
func (o *Offload) NewSlot(bytesPerSecond int64) (uint32, error) {
	o.mu.Lock()
	var s uint32
	switch {
	case len(o.free) > 0:
		s = o.free[len(o.free)-1]
		o.free = o.free[:len(o.free)-1]
	case int(o.next) < o.slots:
		s = o.next
		o.next++
	default:
		o.mu.Unlock()
		return 0, ErrSlots
	}
	o.mu.Unlock()
	zero := make([]kfastCounters, ebpf.MustPossibleCPU())
	b := kfastBucket{}
	if bytesPerSecond > 0 {
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
			o.FreeSlot(s)
			return 0, fmt.Errorf("kfast: clock: %w", err)
		}
		r := uint64(bytesPerSecond)
		b.Tokens, b.Last, b.Rate, b.Burst = r, uint64(now.Nano()), r, r
	}
	if err := errors.Join(o.objs.Stats.Put(s, zero), o.objs.Buckets.Put(s, &b)); err != nil {
		o.FreeSlot(s)
		return 0, fmt.Errorf("kfast: reset slot %d: %w", s, err)
	}
	return s, nil
}

// FreeSlot returns slot s for reuse. The caller has removed its channels and permissions.
func (o *Offload) FreeSlot(s uint32) {
	o.mu.Lock()
	o.free = append(o.free, s)
	o.mu.Unlock()
}

// Channel is one channel binding as the program sees it: packets from Client to Listen on
// channel Num go from Relay to Peer, and packets from Peer to Relay go from Listen to Client
// on channel Num, counted in Slot while Slot has a permission for Peer's IP.
type Channel struct {
	Slot   uint32
	Num    uint16
	Client netip.AddrPort // the client's address as the relay sees it
	Listen netip.AddrPort // the listen address the client sends to (a concrete one, not a wildcard)
	Relay  netip.AddrPort // the allocation's relay address (the socket's, not an advertised external one)
	Peer   netip.AddrPort
}

func (c *Channel) keys() (kfastC2pKey, kfastC2pVal, kfastP2cKey, kfastP2cVal, error) {
	var (
		ck kfastC2pKey
		cv kfastC2pVal
		pk kfastP2cKey
		pv kfastP2cVal
	)
	v4 := c.Client.Addr().Unmap().Is4()
	for _, a := range []netip.Addr{c.Listen.Addr(), c.Relay.Addr(), c.Peer.Addr()} {
		if a.Unmap().Is4() != v4 {
			return ck, cv, pk, pv, ErrFamily
		}
	}
	ck.ClientIp, ck.LisIp = ip16(c.Client.Addr()), ip16(c.Listen.Addr())
	ck.ClientPort, ck.LisPort, ck.Chan = be16(c.Client.Port()), be16(c.Listen.Port()), c.Num
	cv.RelayIp, cv.PeerIp = ip16(c.Relay.Addr()), ip16(c.Peer.Addr())
	cv.RelayPort, cv.PeerPort, cv.Slot = be16(c.Relay.Port()), be16(c.Peer.Port()), c.Slot
	pk.PeerIp, pk.RelayIp, pk.PeerPort, pk.RelayPort = cv.PeerIp, cv.RelayIp, cv.PeerPort, cv.RelayPort
	pv.LisIp, pv.ClientIp, pv.LisPort, pv.ClientPort = ck.LisIp, ck.ClientIp, ck.LisPort, ck.ClientPort
	pv.Chan, pv.Slot = c.Num, c.Slot
	return ck, cv, pk, pv, nil
}

// PutChannel installs c in both directions (replacing an entry with the same keys). The
// program relays it only while c.Slot has a permission for the peer's IP (Permit).
func (o *Offload) PutChannel(c Channel) error {
	ck, cv, pk, pv, err := c.keys()
	if err != nil {
		return err
	}
	if err := o.objs.C2p.Put(&ck, &cv); err != nil {
		return fmt.Errorf("kfast: put channel %#x: %w", c.Num, err)
	}
	if err := o.objs.P2c.Put(&pk, &pv); err != nil {
		o.objs.C2p.Delete(&ck)
		return fmt.Errorf("kfast: put channel %#x: %w", c.Num, err)
	}
	return nil
}

// DeleteChannel removes c's entries, if they are there and still c.Slot's (a later
// allocation of the same client 5-tuple may have bound the same channel number since).
func (o *Offload) DeleteChannel(c Channel) error {
	ck, _, pk, _, err := c.keys()
	if err != nil {
		return err
	}
	var errs []error
	var cv kfastC2pVal
	if o.objs.C2p.Lookup(&ck, &cv) == nil && cv.Slot == c.Slot {
		errs = append(errs, ignoreNotExist(o.objs.C2p.Delete(&ck)))
	}
	var pv kfastP2cVal
	if o.objs.P2c.Lookup(&pk, &pv) == nil && pv.Slot == c.Slot {
		errs = append(errs, ignoreNotExist(o.objs.P2c.Delete(&pk)))
	}
	return errors.Join(errs...)
}

// HasChannel reports whether c is installed in both directions (for tests and tools).
func (o *Offload) HasChannel(c Channel) bool {
	ck, _, pk, _, err := c.keys()
	if err != nil {
		return false
	}
	var cv kfastC2pVal
	var pv kfastP2cVal
	return o.objs.C2p.Lookup(&ck, &cv) == nil && o.objs.P2c.Lookup(&pk, &pv) == nil && cv.Slot == c.Slot && pv.Slot == c.Slot
}

// Permitted reports whether slot has a permission for ip (for tests and tools).
func (o *Offload) Permitted(slot uint32, ip netip.Addr) bool {
	var v uint8
	return o.objs.Perms.Lookup(&kfastPermKey{Slot: slot, PeerIp: ip16(ip)}, &v) == nil
}

// Entries returns how many channel entries (client → peer) and permissions the maps hold.
func (o *Offload) Entries() (chans, perms int) {
	count := func(m *ebpf.Map) int {
		n := 0
		it := m.Iterate()
		var k, v []byte
		for it.Next(&k, &v) {
			n++
		}
		return n
	}
	return count(o.objs.C2p), count(o.objs.Perms)
}

// Permit records a permission for peer IP ip on slot.
func (o *Offload) Permit(slot uint32, ip netip.Addr) error {
	k := kfastPermKey{Slot: slot, PeerIp: ip16(ip)}
	if err := o.objs.Perms.Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("kfast: permit %v: %w", ip, err)
	}
	return nil
}

// Revoke removes slot's permission for ip, if there is one.
func (o *Offload) Revoke(slot uint32, ip netip.Addr) error {
	k := kfastPermKey{Slot: slot, PeerIp: ip16(ip)}
	return ignoreNotExist(o.objs.Perms.Delete(&k))
}

func ignoreNotExist(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// Counters are what the program relayed for one allocation, summed over CPUs. Bytes are
// application data, as user space counts them.
type Counters struct {
	C2PPackets, C2PBytes, P2CPackets, P2CBytes uint64
}

// Add returns c + d.
func (c Counters) Add(d Counters) Counters {
	return Counters{c.C2PPackets + d.C2PPackets, c.C2PBytes + d.C2PBytes, c.P2CPackets + d.P2CPackets, c.P2CBytes + d.P2CBytes}
}

// Counters returns slot's counters.
func (o *Offload) Counters(slot uint32) (Counters, error) {
	var per []kfastCounters
	if err := o.objs.Stats.Lookup(slot, &per); err != nil {
		return Counters{}, fmt.Errorf("kfast: read slot %d: %w", slot, err)
	}
	var c Counters
	for _, p := range per {
		c.C2PPackets += p.C2pPackets
		c.C2PBytes += p.C2pBytes
		c.P2CPackets += p.P2cPackets
		c.P2CBytes += p.P2cBytes
	}
	return c, nil
}

// Drops returns the program's drops by reason, summed over CPUs.
func (o *Offload) Drops() ([NumDrops]uint64, error) {
	var d [NumDrops]uint64
	return d, sumPerCPU(o.objs.Drops, d[:])
}

// Passes returns the packets the program left to the stack, by reason, summed over CPUs.
func (o *Offload) Passes() ([NumPasses]uint64, error) {
	var p [NumPasses]uint64
	return p, sumPerCPU(o.objs.Passes, p[:])
}

func sumPerCPU(m *ebpf.Map, out []uint64) error {
	var per []uint64
	for i := range out {
		if err := m.Lookup(uint32(i), &per); err != nil {
			return fmt.Errorf("kfast: read %v: %w", m, err)
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return nil
}

// ip16 is a as the program keys it: 16 bytes, IPv4 as IPv4-mapped.
func ip16(a netip.Addr) [16]uint8 {
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	return a.As16()
}

// be16 is v in network byte order as the program reads the field (a __be16 loaded raw).
func be16(v uint16) uint16 { return v>>8 | v<<8 }
