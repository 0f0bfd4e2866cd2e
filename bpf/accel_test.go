package bpf

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// roundTrip sends payload on c and reads the same number of bytes back
// (the peer echoes), writing and reading concurrently so that neither
// side's buffers can deadlock the exchange.
func roundTrip(t *testing.T, c *net.TCPConn, payload []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		werr <- err
	}()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %d-byte echo: %v", len(payload), err)
	}
	if err := <-werr; err != nil { // Write returned: ReadFull saw all bytes
		t.Fatalf("writing %d bytes: %v", len(payload), err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("%d-byte echo differs from what was sent (first difference at byte %d)", len(payload), firstDiff(got, payload))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func counters(t *testing.T, a *Accel) Counters {
	t.Helper()
	c, err := a.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addrCount counts the entries of sock_addrs, which the sockops program
// must clean up itself when a socket closes.
func addrCount(t *testing.T, a *Accel) int {
	t.Helper()
	var key, next sockmapSockKey
	var cur any
	n := 0
	for {
		err := a.objs.SockAddrs.NextKey(cur, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		key = next
		cur = &key
	}
}

func socketCount(t *testing.T, a *Accel) int {
	t.Helper()
	n, err := a.SocketCount()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRedirectsRegisteredPort is the main proof: both ends of a loopback
// connection to a registered port enter the sockmap under their own
// 4-tuple (host-order ports), payloads of every size arrive intact in
// both directions, and the counters show that the chosen direction(s)
// bypassed TCP byte for byte.
func TestRedirectsRegisteredPort(t *testing.T) {
	// A limit above the largest payload: this test checks exact counts,
	// and an echo server starved of CPU must not trigger the fallback.
	a := loadAccel(t, Options{QueueLimit: 64 << 20})
	ln, port := listen(t)
	echoServer(t, ln)
	if err := a.AddPort(port); err != nil {
		t.Fatal(err)
	}
	c := dial(t, port)
	clientPort := uint32(c.LocalAddr().(*net.TCPAddr).Port)

	if !waitFor(2*time.Second, func() bool { return socketCount(t, a) == 2 }) {
		t.Fatalf("sockmap holds %d sockets after connect, want 2", socketCount(t, a))
	}
	keys, err := a.sockKeys()
	if err != nil {
		t.Fatal(err)
	}
	lo := uint32(0x0100007f) // 127.0.0.1 in network order, read as little-endian
	want := map[sockmapSockKey]bool{
		{LocalIp4: lo, RemoteIp4: lo, LocalPort: clientPort, RemotePort: uint32(port)}: true,
		{LocalIp4: lo, RemoteIp4: lo, LocalPort: uint32(port), RemotePort: clientPort}: true,
	}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected sockmap key %+v (client port %d, server port %d)", k, clientPort, port)
		}
	}

	var total uint64
	for i, n := range []int{1, 4 << 10, 64 << 10, 8 << 20} {
		roundTrip(t, c, randomBytes(n, uint64(i)))
		total += uint64(n)
	}
	got := counters(t, a)
	t.Logf("counters after %d bytes each way: %+v", total, got)
	if got.SocketsAdded != 2 || got.AddErrors != 0 || got.Fallbacks != 0 {
		t.Errorf("SocketsAdded=%d AddErrors=%d Fallbacks=%d, want 2, 0, 0", got.SocketsAdded, got.AddErrors, got.Fallbacks)
	}
	if got.Redirected == 0 || got.RedirectedBytes != 2*total {
		t.Errorf("redirected %d messages, %d bytes; want >0 messages, %d bytes", got.Redirected, got.RedirectedBytes, 2*total)
	}
	if got.Passed != 0 {
		t.Errorf("passed %d messages (%d bytes), want none", got.Passed, got.PassedBytes)
	}
}

// TestPipelinedWrites sends many writes of assorted sizes back to back
// without waiting for the echo, and checks the echoed stream is the sent
// stream.
func TestPipelinedWrites(t *testing.T) {
	a := loadAccel(t, Options{})
	ln, port := listen(t)
	echoServer(t, ln)
	if err := a.AddPort(port); err != nil {
		t.Fatal(err)
	}
	c := dial(t, port)
	c.SetDeadline(time.Now().Add(20 * time.Second))

	const writes = 2000
	r := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	var sizes []int
	for range writes {
		n := 1 + r.IntN(1500)
		sizes = append(sizes, n)
		stream = append(stream, randomBytes(n, uint64(len(stream)))...)
	}
	werr := make(chan error, 1)
	go func() {
		off := 0
		for _, n := range sizes {
			if _, err := c.Write(stream[off : off+n]); err != nil {
				werr <- err
				return
			}
			off += n
		}
		werr <- nil
	}()
	got := make([]byte, len(stream))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading pipelined echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("pipelined write: %v", err)
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("pipelined echo differs at byte %d of %d", firstDiff(got, stream), len(stream))
	}
	if cnt := counters(t, a); cnt.Redirected < writes {
		t.Errorf("redirected %d messages for %d writes", cnt.Redirected, writes)
	}
}

// acceptOne accepts one connection on ln within 5 s; it is closed at
// cleanup.
func acceptOne(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectedPair returns the client and server ends of a connection to a
// registered port, after checking that both entered the sockmap.
func connectedPair(t *testing.T, a *Accel) (client, server *net.TCPConn) {
	t.Helper()
	ln, port := listen(t)
	if err := a.AddPort(port); err != nil {
		t.Fatal(err)
	}
	before := socketCount(t, a)
	client = dial(t, port)
	server = acceptOne(t, ln)
	if !waitFor(2*time.Second, func() bool { return socketCount(t, a) == before+2 }) {
		t.Fatalf("sockmap holds %d sockets after connect, want %d", socketCount(t, a), before+2)
	}
	return client, server
}

// send writes p on from and reads it on to, checking the bytes.
func send(t *testing.T, from, to *net.TCPConn, p []byte) {
	t.Helper()
	to.SetReadDeadline(time.Now().Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() { _, err := from.Write(p); werr <- err }()
	got := make([]byte, len(p))
	if _, err := io.ReadFull(to, got); err != nil {
		t.Fatalf("reading %d bytes: %v", len(p), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing %d bytes: %v", len(p), err)
	}
	if !bytes.Equal(got, p) {
		t.Fatalf("%d bytes arrived altered (first difference at %d)", len(p), firstDiff(got, p))
	}
}

// TestClosedSocketsLeaveTheMap closes each side first in turn: the kernel
// drops a socket from the sockmap when it is closed, so nothing stale
// stays behind for a later connection reusing the 4-tuple.
func TestClosedSocketsLeaveTheMap(t *testing.T) {
	for _, first := range []string{"client", "server"} {
		t.Run("first="+first, func(t *testing.T) {
			a := loadAccel(t, Options{})
			client, server := connectedPair(t, a)
			send(t, client, server, []byte("request"))
			send(t, server, client, []byte("response"))

			closer, other := client, server
			if first == "server" {
				closer, other = server, client
			}
			closer.Close()
			if !waitFor(2*time.Second, func() bool { return socketCount(t, a) == 1 }) {
				t.Fatalf("after the %s closed, sockmap holds %d sockets, want 1", first, socketCount(t, a))
			}
			other.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := other.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("peer of closed %s read %d bytes, %v; want EOF", first, n, err)
			}
			other.Close()
			if !waitFor(2*time.Second, func() bool { return socketCount(t, a) == 0 }) {
				t.Fatalf("after both sides closed, sockmap holds %d sockets, want 0", socketCount(t, a))
			}
			if !waitFor(2*time.Second, func() bool { return addrCount(t, a) == 0 }) {
				t.Fatalf("after both sides closed, sock_addrs holds %d entries, want 0", addrCount(t, a))
			}
		})
	}
}

// TestUnregisteredPortIsNotRedirected checks that the port table, not
// mere loopback-ness, decides: a connection to another port never enters
// the sockmap and none of its bytes are counted.
func TestUnregisteredPortIsNotRedirected(t *testing.T) {
	a := loadAccel(t, Options{})
	_, registered := listen(t)
	if err := a.AddPort(registered); err != nil {
		t.Fatal(err)
	}
	ln, port := listen(t)
	echoServer(t, ln)
	c := dial(t, port)
	roundTrip(t, c, randomBytes(64<<10, 7))
	if n := socketCount(t, a); n != 0 {
		t.Errorf("sockmap holds %d sockets for a connection to an unregistered port", n)
	}
	if got := counters(t, a); got != (Counters{}) {
		t.Errorf("counters moved for an unregistered port: %+v", got)
	}
}

// TestRemovePortStopsNewConnections: after RemovePort, new connections
// stay on TCP while the connection already accelerated keeps its entry
// and its redirection (removing it would lose queued bytes).
func TestRemovePortStopsNewConnections(t *testing.T) {
	a := loadAccel(t, Options{})
	ln, port := listen(t)
	echoServer(t, ln)
	if err := a.AddPort(port); err != nil {
		t.Fatal(err)
	}
	old := dial(t, port)
	if !waitFor(2*time.Second, func() bool { return socketCount(t, a) == 2 }) {
		t.Fatalf("sockmap holds %d sockets, want 2", socketCount(t, a))
	}
	if err := a.RemovePort(port); err != nil {
		t.Fatal(err)
	}
	if err := a.RemovePort(port); err != nil {
		t.Fatalf("removing an unregistered port: %v, want nil", err)
	}
	fresh := dial(t, port)
	roundTrip(t, fresh, randomBytes(4<<10, 1))
	if n := socketCount(t, a); n != 2 {
		t.Errorf("after RemovePort and a new connection, sockmap holds %d sockets, want the old 2", n)
	}
	if got := counters(t, a); got.RedirectedBytes != 0 {
		t.Errorf("the new connection was redirected: %+v", got)
	}
	roundTrip(t, old, randomBytes(4<<10, 2))
	if got := counters(t, a); got.RedirectedBytes != 2*4<<10 {
		t.Errorf("old connection redirected %d bytes after RemovePort, want %d", got.RedirectedBytes, 2*4<<10)
	}
}

// TestCloseKeepsLiveConnections: Close stops new acceleration but bytes
// already redirected to a socket survive, and accelerated connections
// keep working. When they close, the kernel frees the programs and maps:
// nothing is left behind.
func TestCloseKeepsLiveConnections(t *testing.T) {
	requireBPF(t)
	a, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ids, err := a.kernelIDs()
	if err != nil {
		t.Fatal(err)
	}
	client, server := connectedPair(t, a)
	queued := randomBytes(1<<20, 3)
	client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Write(queued); err != nil { // sits in the server's redirect queue
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(queued))
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, queued) {
		t.Fatalf("bytes queued before Close: read err %v, intact %v", err, bytes.Equal(got, queued))
	}
	send(t, client, server, randomBytes(256<<10, 4))
	send(t, server, client, randomBytes(256<<10, 5))
	if _, err := a.Counters(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counters after Close: %v, want ErrClosed", err)
	}
	if err := a.AddPort(1); !errors.Is(err, ErrClosed) {
		t.Errorf("AddPort after Close: %v, want ErrClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The sockops program is gone with its link; the sk_msg program and
	// the maps it uses are held by the accelerated sockets.
	if alive := ids.alive(); alive["sockops"] || !alive["sk_msg"] || !alive["sock_hash"] {
		t.Errorf("after Close with open connections, alive kernel objects are %v; want sk_msg and sock_hash but not sockops", alive)
	}

	client.Close()
	server.Close()
	if !waitFor(5*time.Second, func() bool { return len(ids.alive()) == 0 }) {
		t.Errorf("kernel objects still alive after Close and all connections closed: %v", ids.alive())
	}
}

// TestSpliceDoesNotSeeRedirectedData pins down the trap the package docs
// warn about: splice(2), which io.Copy between two *net.TCPConn uses,
// reads only the TCP receive queue, so it forwards nothing of what the
// sk_msg program redirected; copying through a buffer works.
func TestSpliceDoesNotSeeRedirectedData(t *testing.T) {
	a := loadAccel(t, Options{})
	client, server := connectedPair(t, a)
	sinkLn, _ := listen(t)
	sinkOut := dial(t, uint16(sinkLn.Addr().(*net.TCPAddr).Port))
	sinkIn := acceptOne(t, sinkLn)

	payload := []byte("redirected bytes are invisible to splice")
	if _, err := client.Write(payload); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := io.Copy(sinkOut, server) // *net.TCPConn to *net.TCPConn: splice
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("splicing an accelerated socket copied %d bytes (err %v); the package docs say it copies none", n, err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(plainConn{Reader: server}, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("buffered read after failed splice: %q, %v", got, err)
	}
	sinkIn.Close()
}

func TestLoadRejectsBadOptions(t *testing.T) {
	for _, limit := range []int{-1, 1 << 31} {
		if _, err := Load(Options{QueueLimit: limit}); err == nil {
			t.Errorf("Load accepted QueueLimit %d", limit)
		}
	}
	requireBPF(t)
	_, err := Load(Options{CgroupPath: t.TempDir() + "/missing"})
	if err == nil || errors.Is(err, ErrNotSupported) {
		t.Errorf("Load with a missing cgroup: %v, want a plain error", err)
	}
	a := loadAccel(t, Options{})
	if err := a.AddPort(0); err == nil {
		t.Error("AddPort(0) succeeded")
	}
	if a.QueueLimit() != DefaultQueueLimit {
		t.Errorf("default queue limit %d, want %d", a.QueueLimit(), DefaultQueueLimit)
	}
	if mnt, err := CgroupV2Mount(); err != nil || a.CgroupPath() != mnt {
		t.Errorf("default cgroup %q, want the cgroup v2 mount %q (%v)", a.CgroupPath(), mnt, err)
	}
}
