// Package sock is the relay's thin layer over UDP sockets: addresses in the kernel's own
// sockaddr layout (built once, so that sending neither converts nor allocates), opening and
// binding non-blocking sockets, a sendto that never blocks, and the conversions between
// netip, net and raw addresses.
package sock
