package fastpath

import (
	"net"
	"syscall"
	"unsafe"
)

// backendConn is a dialed backend connection with what the staleness probe
// and writeAwait need prepared once, at dial time, so neither allocates. It
// is used by one request at a time.
type backendConn struct {
	*net.TCPConn
	rc    syscall.RawConn
	peek  func(fd uintptr) bool
	stale bool
	await awaitState
	raw   *rawIO
}

func newBackendConn(c *net.TCPConn) (*backendConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	bc := &backendConn{TCPConn: c, rc: rc}
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
	bc.raw = newRawIO(c)
	return bc, nil
}

// connStale reports whether a pooled connection is unusable before anything
// is written to it: the backend closed it, reset it, or sent bytes nobody
// asked for. It peeks without blocking. It runs before a request that could
// not be retried once sent, so a stale connection costs a fresh dial
// instead of a failed request.
func connStale(c net.Conn) bool {
	bc, ok := c.(*backendConn)
	if !ok {
		return false
	}
	bc.stale = false
	if err := bc.rc.Read(bc.peek); err != nil {
		return true
	}
	return bc.stale
}
