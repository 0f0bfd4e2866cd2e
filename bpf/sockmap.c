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
#include <bpf/bpf_core_read.h>

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
	COUNTER_FALLBACKS,
	COUNTER_RELEASED,
	COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// on_tcp marks a socket that stays on the ordinary TCP path for the rest
// of its life. A socket that has sent even one message through TCP must
// never be redirected afterwards: the receiver's tcp_bpf_recvmsg reads
// its redirect queue before its TCP receive queue, so going from TCP to
// redirection could reorder bytes. The opposite switch is safe: whatever
// was redirected is read before anything sent later over TCP. A socket
// goes on TCP when its peer is not in sock_hash (as in the window between
// the client's ACTIVE_ESTABLISHED and the server child's
// PASSIVE_ESTABLISHED) or when its peer has fallen behind (queue_limit).
// User space sets it on a socket before connecting it (Accel.Exclude) to
// keep the connection out of the sockmap altogether.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u8);
} on_tcp SEC(".maps");

// sock_addrs maps each sock_hash key to the address of its kernel struct
// sock, so that the sk_msg program can read how much the peer has queued
// (looking the peer up in sock_hash would take a socket reference that
// sk_msg programs cannot release). The address is only ever read through
// bpf_probe_read_kernel, which is safe on a stale address; the entry is
// deleted when the socket leaves ESTABLISHED, and LRU eviction bounds
// whatever a missed deletion leaves behind.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, struct sock_key);
	__type(value, __u64);
} sock_addrs SEC(".maps");

// release holds the keys of sockets whose peer has promised to send
// nothing more on the connection and to close it after reading
// (Accel.Release, written by user space). Such a socket, once it sends
// over TCP (its peer fell behind, queue_limit), leaves sock_hash at the
// next ACK it gets: the sockmap's TCP path costs about a quarter more CPU
// per byte than plain TCP. Leaving is safe only because nothing can be
// redirected to it any more (the peer sends nothing) and nothing
// redirected to it is left unread (checked before). Only the sockops
// program may delete from sock_hash, hence the ACK (RTT_CB) as the moment.
// LRU eviction bounds what a missed STATE_CB cleanup leaves behind.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, struct sock_key);
	__type(value, __u8);
} release SEC(".maps");

// The one kernel field read, located by a CO-RE relocation against the
// running kernel's BTF: struct sock's sk_rmem_alloc, which the sk_msg
// ingress path charges for every redirected byte not yet read.
struct sock___loopgate {
	struct {
		struct {
			int counter;
		} rmem_alloc;
	} sk_backlog;
} __attribute__((preserve_access_index));

// netns_cookie restricts acceleration to one network namespace: loopback
// 4-tuples are only unique within a namespace, and the programs are
// attached to a cgroup that may hold sockets of several. Set by the
// loader before the programs are loaded; 0 disables the check.
volatile const __u64 netns_cookie = 0;

// queue_limit is the most a receiving socket may hold unread (bytes)
// before its peer stops redirecting to it. Redirected bytes bypass the
// receiver's buffer limits, so without it a reader that falls behind
// lets the writer queue without bound; past the limit the writer goes on
// TCP for good and flow control throttles it again. Set by the loader.
volatile const __u32 queue_limit = 4 << 20;

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	// Atomic although per-CPU: a sockops run in softirq can interrupt an
	// sk_msg run on the same CPU.
	if (v)
		__sync_fetch_and_add(v, n);
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

// peer_queued returns how many bytes the socket under key has received
// but not read, or -1 when it is unknown.
static __always_inline long peer_queued(struct sock_key *key)
{
	__u64 *addr = bpf_map_lookup_elem(&sock_addrs, key);
	if (!addr)
		return -1;
	struct sock___loopgate *sk = (void *)(unsigned long)*addr;
	int queued = 0;
	if (bpf_core_read(&queued, sizeof(queued), &sk->sk_backlog.rmem_alloc.counter))
		return -1;
	return queued;
}

SEC("sockops")
int loopgate_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_STATE_CB &&
	    op != BPF_SOCK_OPS_RTT_CB)
		return 1;
	if (skops->family != 2 /* AF_INET */)
		return 1;
	if (!is_loopback(skops->local_ip4) || !is_loopback(skops->remote_ip4))
		return 1;

	struct sock_key key = {
		.local_ip4 = skops->local_ip4,
		.remote_ip4 = skops->remote_ip4,
		.local_port = skops->local_port,
		.remote_port = port_from_ctx(skops->remote_port),
	};
	if (op == BPF_SOCK_OPS_RTT_CB) {
		// Only sockets we added ask for RTT callbacks, and an ACK
		// means this socket has sent over TCP.
		if (bpf_map_lookup_elem(&release, &key) && peer_queued(&key) == 0 &&
		    bpf_map_delete_elem(&sock_hash, &key) == 0) {
			bpf_map_delete_elem(&release, &key);
			count(COUNTER_RELEASED, 1);
		}
		return 1;
	}
	if (op == BPF_SOCK_OPS_STATE_CB) {
		// Only sockets we added ask for state callbacks. Every socket
		// ends in TCP_CLOSE (tcp_done), even one that goes on to
		// TIME_WAIT; until then its peer may still send to it. The
		// kernel removes it from sock_hash by itself.
		if (skops->args[1] == BPF_TCP_CLOSE) {
			bpf_map_delete_elem(&sock_addrs, &key);
			bpf_map_delete_elem(&release, &key);
		}
		return 1;
	}
	if (netns_cookie && bpf_get_netns_cookie(skops) != netns_cookie)
		return 1;
	if (!is_backend_port(key.local_port) && !is_backend_port(key.remote_port))
		return 1;

	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	// A socket user space marked before connecting (Accel.Exclude) stays
	// out, and so does its server end, which goes in only after it.
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && bpf_sk_storage_get(&on_tcp, sk, 0, 0))
		return 1;
	// A server's socket goes in only after its client's: the client's
	// ACTIVE_ESTABLISHED always comes first (it sends the handshake's last
	// ACK), so a client whose socket is not in the map is one this program
	// does not see: one outside the cgroup it is attached to. Its server
	// end would only be redirected to nothing.
	if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		struct sock_key peer = {
			.local_ip4 = key.remote_ip4,
			.remote_ip4 = key.local_ip4,
			.local_port = key.remote_port,
			.remote_port = key.local_port,
		};
		if (!bpf_map_lookup_elem(&sock_addrs, &peer))
			return 1;
	}
	__u64 addr = (__u64)(unsigned long)sk;
	if (bpf_map_update_elem(&sock_addrs, &key, &addr, BPF_ANY) ||
	    bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST)) {
		bpf_map_delete_elem(&sock_addrs, &key);
		count(COUNTER_ADD_ERRORS, 1);
		return 1;
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG);
	count(COUNTER_SOCKETS_ADDED, 1);
	return 1;
}

SEC("sk_msg")
int loopgate_sk_msg(struct sk_msg_md *msg)
{
	__u64 size = msg->size;
	struct bpf_sock *sk = msg->sk;

	if (!sk || bpf_sk_storage_get(&on_tcp, sk, 0, 0))
		goto pass;

	struct sock_key peer = {
		.local_ip4 = msg->remote_ip4,
		.remote_ip4 = msg->local_ip4,
		.local_port = port_from_ctx(msg->remote_port),
		.remote_port = msg->local_port,
	};
	long queued = peer_queued(&peer);
	if (queued < 0)
		goto to_tcp;
	if (queued > queue_limit) {
		count(COUNTER_FALLBACKS, 1);
		goto to_tcp;
	}
	// On a miss the helper returns SK_DROP, which would fail the sender's
	// write with EACCES; only its success verdict is ever returned.
	if (bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS) {
		count(COUNTER_REDIRECT_MSGS, 1);
		count(COUNTER_REDIRECT_BYTES, size);
		return SK_PASS;
	}
to_tcp:
	bpf_sk_storage_get(&on_tcp, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
pass:
	count(COUNTER_PASS_MSGS, 1);
	count(COUNTER_PASS_BYTES, size);
	return SK_PASS;
}
