// RawIO: reads and writes of a non-blocking TCP socket with RawSyscall.

package sockio

import (
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// RawIO reads and writes a TCP connection's non-blocking socket with
// RawSyscall, waiting for readiness through the netpoller as net.Conn does
// (deadlines and Close behave the same). Reads and writes may run in two
// goroutines at once (the body pump writes while the response is read);
// each direction has its own state, and each direction is used by one
// goroutine at a time. The callbacks are made once per connection, so an
// operation allocates nothing. A RawIO must not be copied.
//
// Why: a Go syscall.Syscall tells the scheduler the thread may block. On
// a busy core a write to a loopback peer often outlasts a sysmon tick
// (it runs the peer's receive path and the peer may preempt us), so the
// runtime's monitor keeps retaking the processor from "blocked" syscalls,
// handing it off and polling every 20 µs: measured on loopgate pinned to
// one core at 32 connections, 2,000-3,000 nanosleeps and ~1,000 futex
// wake-ups a second, about 7 % of its CPU. Non-blocking socket calls never
// sleep in the kernel, so they need none of that; with RawSyscall the
// monitor goes back to 10 ms sleeps (under 10 wake-ups a second).
type RawIO struct {
	conn *net.TCPConn
	rc   syscall.RawConn

	rp   []byte
	rn   int
	rerr syscall.Errno
	rfn  func(fd uintptr) bool

	wp   []byte
	wn   int
	werr syscall.Errno
	wfn  func(fd uintptr) bool

	// writeTimeout (ns, 0: none) is SetWriteTimeout's; armedAt is how
	// much of wp was written when a write that had to wait armed it, -1
	// when none did.
	writeTimeout atomic.Int64
	armedAt      int
}

// NewRawIO returns nil for anything but a *net.TCPConn; callers then use
// the connection's own Read and Write.
func NewRawIO(c net.Conn) *RawIO {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &RawIO{conn: tc, rc: rc}
	r.rfn = func(fd uintptr) bool {
		for {
			n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.rp[0])), uintptr(len(r.rp)))
			switch e {
			case 0:
				r.rn = int(n)
				return true
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until readable
			default:
				r.rerr = e
				return true
			}
		}
	}
	r.wfn = func(fd uintptr) bool {
		for r.wn < len(r.wp) {
			n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&r.wp[r.wn])), uintptr(len(r.wp)-r.wn))
			switch e {
			case 0:
				r.wn += int(n)
			case syscall.EINTR:
			case syscall.EAGAIN:
				// Wait until writable, for at most the write timeout
				// from now if this write made progress since it last
				// armed it.
				if d := r.writeTimeout.Load(); d > 0 && r.wn > r.armedAt {
					_ = r.conn.SetWriteDeadline(time.Now().Add(time.Duration(d)))
					r.armedAt = r.wn
				}
				return false
			default:
				r.werr = e
				return true
			}
		}
		return true
	}
	return r
}

// Read reads as net.Conn.Read does: io.EOF at the peer's end.
func (r *RawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rp, r.rn, r.rerr = p, 0, 0
	err := r.rc.Read(r.rfn) // deadline, Close
	r.rp = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerr != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: r.rerr}
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

// Write writes all of p, as net.Conn.Write does.
func (r *RawIO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.wp, r.wn, r.werr, r.armedAt = p, 0, 0, -1
	err := r.rc.Write(r.wfn)
	r.wp = nil
	if r.armedAt >= 0 {
		_ = r.conn.SetWriteDeadline(time.Time{}) // for the next write, which may not wait
	}
	if err == nil && r.werr != 0 {
		err = &net.OpError{Op: "write", Net: "tcp", Err: r.werr}
	}
	return r.wn, err
}

// SetWriteTimeout makes each Write that has to wait for room in the socket
// buffer give up when d passes without progress (0: never), the way a
// write deadline renewed before every write would, but without reading the
// clock or setting a deadline for the writes that do not wait: most do,
// and on a virtual machine's clock the two cost hundreds of nanoseconds.
// The connection's write deadline must be unset while a write timeout is;
// SetWriteTimeout(0) before setting one again.
func (r *RawIO) SetWriteTimeout(d time.Duration) { r.writeTimeout.Store(int64(d)) }

// WriteTimeout returns what SetWriteTimeout set.
func (r *RawIO) WriteTimeout() time.Duration { return time.Duration(r.writeTimeout.Load()) }
