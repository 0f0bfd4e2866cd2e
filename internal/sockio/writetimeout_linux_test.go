package sockio

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns the accepted side of a loopback connection, as a
// ClientConn, and the dialing side; both are closed at the test's end.
func pair(t *testing.T) (*ClientConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	cc := NewClientConn(c)
	if cc.raw == nil {
		t.Fatal("accepted TCP connection without RawIO")
	}
	return &cc, peer
}

// A write timeout bounds only the writes that wait: one made long after
// SetWriteTimeout still goes through, as it would after a deadline renewed
// before each write; a write the client takes nothing of fails d after it
// began to wait.
func TestWriteTimeoutBoundsWaitingWritesOnly(t *testing.T) {
	c, _ := pair(t)
	const d = 300 * time.Millisecond
	if err := c.SetWriteTimeout(d); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatalf("write: %v", err)
	}
	time.Sleep(2 * d)
	if _, err := c.Write([]byte("second, past the timeout")); err != nil {
		t.Fatalf("a write that does not wait failed %v after SetWriteTimeout: %v", 2*d, err)
	}
	// The peer reads nothing: a large write fills both socket buffers.
	start := time.Now()
	n, err := c.Write(make([]byte, 64<<20))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a client that reads nothing: %d bytes, err %v; want the timeout", n, err)
	}
	if took < d || took > 20*time.Second {
		t.Errorf("the stalled write failed after %v; want about %v", took, d)
	}
}

// A write deadline set after a write timeout replaces it, and a write
// timeout set after a deadline unsets the deadline.
func TestWriteDeadlineAndTimeoutReplaceEachOther(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetWriteTimeout(time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline set after the timeout: err %v, want the deadline", err)
	}
	if err := c.SetWriteTimeout(time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write after SetWriteTimeout replaced a past deadline: %v", err)
	}
}
