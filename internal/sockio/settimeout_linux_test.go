package sockio

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// backendPair returns a dialed loopback connection as a BackendConn, to a
// peer that never writes; both are closed at the test's end.
func backendPair(t *testing.T) *BackendConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	bc, err := NewBackendConn(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bc.Close() })
	return bc
}

// readTimesOut reads bc, which gets nothing, and returns how long after
// from the read failed on its deadline.
func readTimesOut(t *testing.T, bc *BackendConn, from time.Time) time.Duration {
	t.Helper()
	_, err := bc.Read(make([]byte, 1))
	took := time.Since(from)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want the deadline passed", err)
	}
	return took
}

// SetTimeout's timeout never fires early: not when an earlier call's
// deadlines are kept, nor when another deadline replaced them in between
// (then they are set again). It fires within the slack, plus a margin for
// a loaded machine.
func TestSetTimeoutNeverEarly(t *testing.T) {
	const d = 640 * time.Millisecond // slack: 10 ms
	for _, tc := range []struct {
		name    string
		between func(bc *BackendConn)
	}{
		{"kept", func(*BackendConn) {}},
		{"after SetReadDeadline", func(bc *BackendConn) { _ = bc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) }},
		{"after SetDeadline", func(bc *BackendConn) { _ = bc.SetDeadline(time.Now().Add(50 * time.Millisecond)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc := backendPair(t)
			if err := bc.SetTimeout(d); err != nil {
				t.Fatal(err)
			}
			time.Sleep(timeoutSlack(d) / 2)
			tc.between(bc)
			start := time.Now()
			if err := bc.SetTimeout(d); err != nil {
				t.Fatal(err)
			}
			took := readTimesOut(t, bc, start)
			if took < d {
				t.Errorf("timed out %v after SetTimeout(%v): early", took, d)
			}
			if took > d+timeoutSlack(d)+2*time.Second {
				t.Errorf("timed out %v after SetTimeout(%v): later than the slack allows", took, d)
			}
		})
	}
}

// A kept timeout that would now fire later than d plus the slack is set
// again, and SetTimeout(0) removes the deadlines.
func TestSetTimeoutMovesAndClears(t *testing.T) {
	bc := backendPair(t)
	if err := bc.SetTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := bc.SetTimeout(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if took := readTimesOut(t, bc, start); took > 5*time.Second {
		t.Errorf("timed out after %v: SetTimeout(300ms) kept a 10 s deadline", took)
	}
	if err := bc.SetTimeout(0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := bc.Read(make([]byte, 1)); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("read without a deadline ended: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	_ = bc.CloseDetached()
	if err := <-done; err == nil {
		t.Fatal("read of a closed connection succeeded")
	}
}
