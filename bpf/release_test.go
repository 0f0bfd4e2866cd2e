package bpf

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestReleaseSlowReader: a reader that promised to send nothing more
// (Release) and then falls behind a 64 MiB stream gets the first bytes
// redirected, then the writer's socket leaves the sockmap and the rest
// comes over plain TCP, outside the sk_msg program: the bytes arrive
// intact and in order across the switch, what the kernel queues stays
// bounded as with the ordinary fallback, and the reader's end stays in
// the map (it may still hold redirected bytes). Without Release the same
// stream ends on the sockmap's TCP path (TestSlowReaderIsBounded).
func TestReleaseSlowReader(t *testing.T) {
	a := loadAccel(t, Options{})
	client, backend := connectedPair(t, a)
	before := socketCount(t, a)
	if err := a.Release(addrPort(t, client.LocalAddr()), addrPort(t, client.RemoteAddr())); err != nil {
		t.Fatal(err)
	}
	const total = 64 << 20
	rep := slowReader(t, backend, client, total, 4<<20, 1500*time.Millisecond)
	c := counters(t, a)
	t.Logf("released slow download: %v; counters %+v", rep, c)
	if rep.maxInFlight > slowReaderBound {
		t.Errorf("%.1f MiB queued in the kernel for a slow reader, want at most %d MiB", mib(rep.maxInFlight), slowReaderBound>>20)
	}
	if c.Fallbacks != 1 || c.Released != 1 {
		t.Errorf("Fallbacks=%d Released=%d, want 1 and 1", c.Fallbacks, c.Released)
	}
	if c.RedirectedBytes < DefaultQueueLimit || c.RedirectedBytes+c.PassedBytes >= total {
		t.Errorf("want at least %d bytes redirected and the rest mostly past the sk_msg program (plain TCP): %+v", DefaultQueueLimit, c)
	}
	if n := socketCount(t, a); n != before-1 {
		t.Errorf("sockmap holds %d sockets after the release, want %d (the writer's end left)", n, before-1)
	}
}

// TestReleaseWithoutFallingBehind: a released connection whose reader
// keeps up stays redirected byte for byte; nothing leaves the map.
func TestReleaseWithoutFallingBehind(t *testing.T) {
	a := loadAccel(t, Options{QueueLimit: 64 << 20})
	client, backend := connectedPair(t, a)
	if err := a.Release(addrPort(t, client.LocalAddr()), addrPort(t, client.RemoteAddr())); err != nil {
		t.Fatal(err)
	}
	const total = 8 << 20
	send(t, backend, client, randomBytes(total, 9))
	c := counters(t, a)
	if c.Released != 0 || c.Fallbacks != 0 || c.RedirectedBytes != total {
		t.Errorf("counters %+v: want %d bytes redirected, no fallback, no release", c, total)
	}
	if n := socketCount(t, a); n != 2 {
		t.Errorf("sockmap holds %d sockets, want 2", n)
	}
}

// TestReleaseIgnoresOtherConnections: Release of a connection that is not
// in the sockmap (an unregistered port) does nothing and is no error.
func TestReleaseIgnoresOtherConnections(t *testing.T) {
	a := loadAccel(t, Options{})
	ln, port := listen(t)
	c := dial(t, port)
	acceptOne(t, ln)
	if err := a.Release(addrPort(t, c.LocalAddr()), addrPort(t, c.RemoteAddr())); err != nil {
		t.Errorf("Release of an unaccelerated connection: %v", err)
	}
	if err := a.objs.Release.NextKey(nil, new(sockmapSockKey)); err == nil {
		t.Errorf("an unaccelerated connection was marked for release")
	}
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// TestExclude: a socket excluded before it connects to a registered port
// leaves the sockmap empty (neither end goes in) and its bytes pass no
// sk_msg program; a connection made next to it is accelerated as usual.
func TestExclude(t *testing.T) {
	a := loadAccel(t, Options{})
	ln, port := listen(t)
	echoServer(t, ln)
	if err := a.AddPort(port); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = a.Exclude(int(fd)) }); cerr != nil {
			return cerr
		}
		return err
	}}
	nc, err := d.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := nc.(*net.TCPConn)
	roundTrip(t, c, randomBytes(1<<20, 3))
	if n := socketCount(t, a); n != 0 {
		t.Errorf("sockmap holds %d sockets for an excluded connection, want 0", n)
	}
	if got := counters(t, a); got.SocketsAdded != 0 || got.Redirected != 0 || got.Passed != 0 {
		t.Errorf("counters %+v for an excluded connection: want nothing added, redirected or passed", got)
	}
	other := dial(t, port)
	roundTrip(t, other, randomBytes(1<<10, 4))
	if got := counters(t, a); got.SocketsAdded != 2 || got.Redirected == 0 {
		t.Errorf("counters %+v after an ordinary connection: want 2 sockets added and messages redirected", got)
	}
}
