package fastpath

import (
	"net"
	"syscall"
	"unsafe"
)

// connStale reports whether a pooled connection is unusable before anything
// is written to it: the backend closed it (EOF), reset it, or sent bytes
// nobody asked for. It peeks without blocking. It is used before a request
// that could not be retried once sent, so a stale connection costs a fresh
// dial instead of a failed request.
func connStale(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	stale := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		_ = n
		// EAGAIN: nothing to read, the connection is idle and open. EOF
		// (n == 0), data (n > 0) or any other error makes it unusable.
		stale = errno != syscall.EAGAIN
		return true
	})
	return stale || err != nil
}
