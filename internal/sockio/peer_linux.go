// PeerEnded: whether the peer of a connection nobody is reading closed
// or reset it, and how much it left unread.

package sockio

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// PeerState is what PeerEnded found on a connection.
type PeerState struct {
	Reset    bool // the peer reset the connection (or it failed): nothing more can be read or sent
	Finished bool // the peer sent FIN: nothing follows the Queued bytes
	Queued   int  // bytes received and not yet read
}

// PeerEnded looks at c without reading or blocking: a poll(2) for
// POLLRDHUP, which reports the peer's FIN even when bytes are still queued
// before it, and FIONREAD. It is for a connection whose reader is busy
// elsewhere, at most a few times a second (it costs two system calls and
// allocates). c must be a TCP connection (or wrap one as its net.Conn
// field); for anything else it reports nothing.
func PeerEnded(c net.Conn) PeerState {
	var st PeerState
	sc, ok := c.(syscall.Conn)
	if !ok {
		return st
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return st
	}
	_ = rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err != nil || n == 0 {
			return
		}
		st.Reset = p[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0
		st.Finished = p[0].Revents&unix.POLLRDHUP != 0
		if q, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			st.Queued = q
		}
	})
	return st
}
