//go:build ignore

// SPDX-License-Identifier: GPL-2.0
//
// loopgate's loopback fast path. The sockops program inserts established
// IPv4 loopback sockets that belong to a registered backend port into
// sock_hash, keyed by their own 4-tuple; the sk_msg program, which the
// kernel runs on every sendmsg of a socket in sock_hash, redirects the
// message into the receive queue of the peer socket (the swapped 4-tuple).
//
// Built with bpf2go (see gen.go); the license must be GPL-compatible
// because bpf_sock_hash_update and bpf_msg_redirect_hash are GPL-only.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

// Maximum number of sockets (two per accelerated connection). A socket
// that does not fit is simply not accelerated (counter add_errors).
#define MAX_SOCKETS 65536
#define MAX_PORTS 4096

// sock_key identifies one end of a TCP connection. Ports are in host
// order, addresses in network order; the sockops and sk_msg contexts
// deliver remote_port differently (see port_from_ctx), so both programs
// normalise before building a key.
struct sock_key {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_port;
	__u32 remote_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, struct sock_key);
	__type(value, __u64);
} sock_hash SEC(".maps");

// backend_ports holds the registered backend ports (host order); the
// value is unused.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} backend_ports SEC(".maps");

// Counter indexes; mirrored in counters.go.
enum {
	COUNTER_REDIRECT_MSGS,
	COUNTER_REDIRECT_BYTES,
	COUNTER_PASS_MSGS,
	COUNTER_PASS_BYTES,
	COUNTER_SOCKETS_ADDED,
	COUNTER_ADD_ERRORS,
	COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// passed marks a socket that has sent at least one message through the
// ordinary TCP path. Such a socket must never be redirected afterwards:
// the receiver's tcp_bpf_recvmsg reads its redirect queue before its TCP
// receive queue, so mixing the two paths on one stream could reorder
// bytes. This matters in the window between the client's
// ACTIVE_ESTABLISHED and the server child's PASSIVE_ESTABLISHED, when
// the client may already send but the peer is not yet in sock_hash.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} passed SEC(".maps");

// netns_cookie restricts acceleration to one network namespace: loopback
// 4-tuples are only unique within a namespace, and the programs are
// attached to a cgroup that may hold sockets of several. Set by the
// loader before the programs are loaded; 0 disables the check.
volatile const __u64 netns_cookie = 0;

// redirect_from_backend selects whether messages sent by the backend end
// (the socket whose local port is registered) are redirected as well.
// Set by the loader; see Options.Direction.
volatile const __u8 redirect_from_backend = 1;

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
}

static __always_inline int is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

// port_from_ctx turns the remote_port field of a sockops or sk_msg
// context into host order. The kernel stores the 16-bit network-order
// port in the upper half of the 32-bit field on little-endian hosts and
// in the lower half on big-endian ones; bpf_ntohl of the whole word
// yields the host-order port in both cases.
static __always_inline __u32 port_from_ctx(__u32 remote_port)
{
	return bpf_ntohl(remote_port);
}

static __always_inline int is_backend_port(__u32 port)
{
	__u16 p = port;
	return bpf_map_lookup_elem(&backend_ports, &p) != 0;
}

SEC("sockops")
int loopgate_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		break;
	default:
		return 1;
	}
	if (skops->family != 2 /* AF_INET */)
		return 1;
	if (!is_loopback(skops->local_ip4) || !is_loopback(skops->remote_ip4))
		return 1;
	if (netns_cookie && bpf_get_netns_cookie(skops) != netns_cookie)
		return 1;

	struct sock_key key = {
		.local_ip4 = skops->local_ip4,
		.remote_ip4 = skops->remote_ip4,
		.local_port = skops->local_port,
		.remote_port = port_from_ctx(skops->remote_port),
	};
	if (!is_backend_port(key.local_port) && !is_backend_port(key.remote_port))
		return 1;

	if (bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST) == 0)
		count(COUNTER_SOCKETS_ADDED, 1);
	else
		count(COUNTER_ADD_ERRORS, 1);
	return 1;
}

SEC("sk_msg")
int loopgate_sk_msg(struct sk_msg_md *msg)
{
	__u64 size = msg->size;
	struct bpf_sock *sk = msg->sk;
	__u8 *was_passed = 0;

	if (!sk)
		goto pass;
	was_passed = bpf_sk_storage_get(&passed, sk, 0, 0);
	if (was_passed)
		goto pass;
	if (!redirect_from_backend && is_backend_port(msg->local_port))
		goto pass;

	struct sock_key peer = {
		.local_ip4 = msg->remote_ip4,
		.remote_ip4 = msg->local_ip4,
		.local_port = port_from_ctx(msg->remote_port),
		.remote_port = msg->local_port,
	};
	// On a miss the helper returns SK_DROP, which would fail the sender's
	// write with EACCES; only its success verdict is ever returned.
	if (bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS) {
		count(COUNTER_REDIRECT_MSGS, 1);
		count(COUNTER_REDIRECT_BYTES, size);
		return SK_PASS;
	}
	// From now on this socket always takes the TCP path (see passed).
	bpf_sk_storage_get(&passed, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
pass:
	count(COUNTER_PASS_MSGS, 1);
	count(COUNTER_PASS_BYTES, size);
	return SK_PASS;
}
