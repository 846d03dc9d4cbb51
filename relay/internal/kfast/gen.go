package kfast

// The program is C (bpf/kfast.c), compiled by bpf2go into kfast_bpfel.o and kfast_bpfel.go,
// both committed so that `go build` needs no clang. `make bpf` (or `go generate` here)
// regenerates them; it needs clang and libbpf's headers (libbpf-dev).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -target bpfel -type c2p_key -type c2p_val -type p2c_key -type p2c_val -type perm_key -type counters -type bucket kfast bpf/kfast.c
