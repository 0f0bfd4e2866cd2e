// BackendConn: a dialed backend connection, its stale-connection peek and
// its write-then-await of a whole request.

package sockio

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// BackendConn is a dialed backend connection with what Stale and
// WriteAwait need prepared once, at dial time, so neither allocates. Reads
// and writes go through RawIO. It is used by one request at a time (whose
// body pump may write while the response is read). A BackendConn must not
// be copied.
type BackendConn struct {
	*net.TCPConn
	detached atomic.Bool // Close does nothing: the connection left its pool (Detach)
	rc       syscall.RawConn
	peek     func(fd uintptr) bool
	stale    bool
	await    awaitState
	raw      *RawIO
	// timeoutAt is when (Monotonic ns) the deadlines
	// SetTimeout set for both directions pass; 0 once any other deadline
	// replaced them.
	timeoutAt atomic.Int64
}

// NewBackendConn wraps a freshly dialed connection.
func NewBackendConn(c *net.TCPConn) (*BackendConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	bc := &BackendConn{TCPConn: c, rc: rc}
	bc.peek = func(fd uintptr) bool {
		var b [1]byte
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		// EAGAIN: nothing to read, the connection is idle and open. EOF,
		// bytes nobody asked for, or any other error make it unusable.
		bc.stale = errno != syscall.EAGAIN
		return true
	}
	bc.await.init()
	bc.raw = NewRawIO(c)
	return bc, nil
}

// Read implements net.Conn through RawIO.
func (bc *BackendConn) Read(p []byte) (int, error) { return bc.raw.Read(p) }

// Detach makes Close do nothing, so that the pool the connection came from
// can let go of it (and stop counting it) while its user goes on with it;
// that user closes it with CloseDetached.
func (bc *BackendConn) Detach() { bc.detached.Store(true) }

// Close closes the connection, unless it was detached.
func (bc *BackendConn) Close() error {
	if bc.detached.Load() {
		return nil
	}
	return bc.TCPConn.Close()
}

// CloseDetached closes the connection, detached or not.
func (bc *BackendConn) CloseDetached() error { return bc.TCPConn.Close() }

// Write implements net.Conn through RawIO.
func (bc *BackendConn) Write(p []byte) (int, error) { return bc.raw.Write(p) }

// SetTimeout sets both deadlines d from now (none for d <= 0), or leaves
// those an earlier SetTimeout set when they pass between d and d plus
// timeoutSlack(d) from now: a timeout fires at least d and at most
// timeoutSlack(d) later than d after the call, never early.
//
// Why: setting a deadline reads the clock three more times and changes a
// runtime timer, 150-200 ns on this machine's virtual clock, before every
// request on a pooled connection whose deadline never fires; kept, the cost
// is one monotonic clock reading.
func (bc *BackendConn) SetTimeout(d time.Duration) error {
	if d <= 0 {
		return bc.SetDeadline(time.Time{})
	}
	now := Monotonic()
	if at := bc.timeoutAt.Load(); at != 0 && at-now >= int64(d) && at-now <= int64(d+timeoutSlack(d)) {
		return nil
	}
	at := now + int64(d+timeoutSlack(d))
	err := bc.TCPConn.SetDeadline(MonotonicTime(at))
	bc.timeoutAt.Store(at)
	return err
}

// timeoutSlack is how much later than d a timeout SetTimeout kept may fire:
// 1/64 of it, at most maxTimeoutSlack.
func timeoutSlack(d time.Duration) time.Duration { return min(d/64, maxTimeoutSlack) }

const maxTimeoutSlack = 250 * time.Millisecond

// monoEpoch is the origin of Monotonic, with the monotonic reading that
// deadlines made from it keep.
var monoEpoch = time.Now()

// Monotonic is the monotonic clock in nanoseconds since the process
// started: one clock reading, where time.Now takes two (and a wall clock
// that may step).
func Monotonic() int64 { return int64(time.Since(monoEpoch)) }

// MonotonicTime is the time Monotonic read as ns, for a deadline.
func MonotonicTime(ns int64) time.Time { return monoEpoch.Add(time.Duration(ns)) }

// MonotonicOf is t as Monotonic ns, from t's monotonic reading when it has
// one (time.Now's): no clock reading.
func MonotonicOf(t time.Time) int64 { return int64(t.Sub(monoEpoch)) }

// SetDeadline implements net.Conn; it replaces SetTimeout's deadlines.
func (bc *BackendConn) SetDeadline(t time.Time) error {
	bc.timeoutAt.Store(0)
	return bc.TCPConn.SetDeadline(t)
}

// SetReadDeadline implements net.Conn; it replaces SetTimeout's deadlines.
func (bc *BackendConn) SetReadDeadline(t time.Time) error {
	bc.timeoutAt.Store(0)
	return bc.TCPConn.SetReadDeadline(t)
}

// SetWriteDeadline implements net.Conn; it replaces SetTimeout's deadlines.
func (bc *BackendConn) SetWriteDeadline(t time.Time) error {
	bc.timeoutAt.Store(0)
	return bc.TCPConn.SetWriteDeadline(t)
}

// Stale reports whether a pooled connection is unusable before anything
// is written to it: the backend closed it, reset it, or sent bytes nobody
// asked for. It peeks without blocking. A connection that is not a
// *BackendConn is never reported stale.
func Stale(c net.Conn) bool {
	bc, ok := c.(*BackendConn)
	if !ok {
		return false
	}
	bc.stale = false
	if err := bc.rc.Read(bc.peek); err != nil {
		return true
	}
	return bc.stale
}

// awaitState is WriteAwait's per-connection state, with the callback made
// once so that a call allocates nothing.
type awaitState struct {
	out   []byte
	n     int   // bytes of out written
	wrote bool  // the write was attempted
	err   error // a write error other than EAGAIN
	fn    func(fd uintptr) bool
}

func (a *awaitState) init() {
	a.fn = func(fd uintptr) bool {
		if a.wrote {
			return true // called again: the answer is readable
		}
		a.wrote = true
		for a.n < len(a.out) {
			n, _, err := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&a.out[a.n])), uintptr(len(a.out)-a.n))
			switch err {
			case 0:
				a.n += int(n)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return true // the rest goes out through the blocking Write
			default:
				a.err = err
				return true
			}
		}
		return false // wait for readability
	}
}

// WriteAwait writes a whole request (nothing follows it) to the backend and
// returns when the answer can be read, or when the read deadline passes:
// the next read then finds what it waits for, or reports the deadline. A
// connection that is not a *BackendConn is written to plainly.
//
// Why: a plain Write followed by a Read always costs one read(2) that fails
// with EAGAIN, since the backend cannot have answered yet; on a loaded host
// that is one of the five system calls a proxied request needs. Waiting
// first is only safe if readiness is reset before the write (Go's netpoller
// forgets an edge that came before the wait began), so the write is made
// from inside RawConn.Read, whose reset precedes the callback. The write
// deadline applies when the socket buffer is full and the rest is written
// by the ordinary Write.
//
// An error means the request may not have been sent whole; nothing of it
// was if the error came before the first byte.
func WriteAwait(c net.Conn, p []byte) error {
	bc, ok := c.(*BackendConn)
	if !ok {
		_, err := c.Write(p)
		return err
	}
	a := &bc.await
	a.out, a.n, a.wrote, a.err = p, 0, false, nil
	err := bc.rc.Read(a.fn)
	a.out = nil
	switch {
	case !a.wrote:
		return &net.OpError{Op: "write", Net: "tcp", Err: err} // failed before the write
	case a.err != nil:
		return &net.OpError{Op: "write", Net: "tcp", Err: a.err}
	case a.n < len(p):
		_, err = bc.TCPConn.Write(p[a.n:])
		return err
	}
	return nil // a wait that ended on the deadline is for the next read to report
}
