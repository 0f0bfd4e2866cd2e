// Package bpf owns loopgate's kernel side: an eBPF sockops program that
// puts loopback sockets of supervised backend ports into a SOCKHASH, and an
// sk_msg program that redirects each message straight to the peer socket,
// bypassing the loopback TCP/IP stack.
//
// The C source lives beside the committed bpf2go output, so building
// loopgate never needs clang. Probe reports ErrNotSupported when the kernel,
// the cgroup v2 hierarchy or the process's privileges cannot carry the
// programs; callers then fall back to plain TCP. Only this package imports
// github.com/cilium/ebpf.
package bpf
