// Package bpf owns loopgate's kernel side: an eBPF sockops program that
// puts loopback sockets of supervised backend ports into a SOCKHASH, and an
// sk_msg program that redirects each message straight to the peer socket,
// bypassing the loopback TCP/IP stack.
//
// It is for the serve command and the supervisor: Probe says whether the
// host can do it, Load attaches it, AddPort and RemovePort (the
// supervisor's PortRegistry) say which backend ports qualify, Counters
// proves it happened, Close stops it. It does not decide whether
// acceleration is worth having (the benchmarks do) and does not touch the
// data path in user space.
//
// The C source (sockmap.c) lives beside the committed bpf2go output, so
// building loopgate never needs clang; `make generate` rebuilds it and a
// test checks the committed object still matches the source. Probe
// reports ErrNotSupported when the kernel, the cgroup v2 hierarchy or the
// process's privileges cannot carry the programs; callers then fall back
// to plain TCP. Only this package imports github.com/cilium/ebpf.
//
// # What qualifies
//
// A connection is accelerated when it is established after its server
// port was registered, both addresses are in 127.0.0.0/8, both ends
// belong to processes in the Options.CgroupPath subtree, and both live in
// the network namespace that called Load. The client end counts in the
// cgroup of the process that created its socket, the server end in the
// cgroup of the process that created the listener; a server end enters
// the map only after its client end did, so a client outside the subtree
// leaves nothing in the map even though the backend is inside. With the
// default CgroupPath (the mount's root) any local client of a registered
// port qualifies; loopgate attaches to its own cgroup (OwnCgroup), so
// only loopgate and its backends do. Connections established before
// AddPort or after RemovePort stay on TCP.
//
// # Traps for users of accelerated sockets
//
//   - splice(2) never sees redirected bytes: they wait in a queue that
//     only recvmsg reads. Go's io.Copy between two *net.TCPConn splices
//     (and spins until a deadline, forwarding nothing), so a socket that
//     may be in the map must be copied through a user-space buffer, e.g.
//     by hiding ReadFrom/WriteTo behind a plain io.Reader/io.Writer.
//   - Removing a live socket from the map discards what was already
//     redirected to it and not yet read. This package never does that:
//     RemovePort and Close only stop new connections from qualifying, and
//     the kernel removes a socket itself when it is closed.
//   - Turning acceleration off does not de-accelerate open connections.
//     After Close, or when the process exits (even by SIGKILL), the kernel
//     detaches the sockops program at once, but each accelerated socket
//     keeps the sk_msg program and the maps alive and its bytes keep
//     being redirected until it closes; then the kernel frees everything.
//     Nothing is pinned to bpffs, so nothing else survives the process.
//     A status page should say "off for new connections", not "off".
//
// # Backpressure
//
// Redirected bytes bypass the receiver's buffer limits and TCP flow
// control: on its own, a writer whose peer does not read can queue without
// bound, up to the host-wide tcp_mem limit (measured on Linux 6.18: of a
// 1 GiB stream to a reader taking 4 MiB/s, 1011 MiB sat in the receiver's
// rmem_alloc, visible as "skmem r" in ss -tm, against 4 MiB over plain
// TCP). So before each redirect the sk_msg program reads how much the
// peer holds unread (its sk_rmem_alloc); past Options.QueueLimit the
// writer goes back to TCP for the rest of the connection and flow
// control throttles it again. A slow client downloading a large response
// through loopgate, or a backend reading an upload slowly, thus pins about
// QueueLimit plus ordinary TCP buffers per connection, and that
// connection continues unaccelerated; Counters.Fallbacks counts them.
//
// That TCP is not plain TCP: a socket in the map still copies every
// message into an sk_msg and runs the sk_msg program on it, which costs
// about a quarter more CPU per byte than plain loopback (BenchmarkBulk).
// Release avoids it where the socket can leave the map: its caller
// promises to send nothing more on the connection and to close it after
// reading (loopgate does for a response body larger than QueueLimit), and
// once the writer has gone over to TCP the sockops program, at the next
// ACK the writer gets (BPF_SOCK_OPS_RTT_CB: only sockops programs may
// delete from a SOCKHASH), takes the writer's socket out of the map if
// nothing redirected to it is unread; Counters.Released counts them.
// The writer of an upload cannot promise that of its peer (a backend may
// answer before it read the body), so a connection meant for a bulk
// upload is kept out of the map from the start instead: Exclude marks its
// socket before it connects.
//
// # Ordering
//
// A receiving socket reads its redirect queue before its TCP receive
// queue. Going from redirection to TCP is therefore safe (everything
// redirected was sent, and is read, first) but going from TCP to
// redirection could reorder bytes, so a socket that has sent one message
// over TCP is never redirected again. That also covers the short window
// between the client's and the server's ESTABLISHED callbacks, in which
// the client may send before its peer is in the map.
//
// # Privileges
//
// Reading the peer's queue length keeps kernel socket addresses in a map
// and reads them with bpf_probe_read_kernel, which needs CAP_PERFMON and
// a kernel without lockdown; Probe checks both.
package bpf
