package fastpath

import (
	"bufio"
	"net"
)

// gatherState lets writeGathered add a body chunk to the next Write of a
// client connection. It is used by the goroutine serving the connection
// only.
type gatherState struct {
	tail  []byte    // written after the bytes of the next Write
	tailN int       // bytes of tail written
	arr   [2][]byte // backs iov, so a gathered write allocates nothing
	iov   net.Buffers
}

// writeGathered writes what bw holds followed by p with one writev(2) and
// returns how many bytes of p were written; ok is false when the client
// connection cannot (TLS) and nothing was written.
//
// Why: fasthttp has written the response head into bw. When p does not fit
// in what is left of bw, bufio fills the buffer, writes it and then writes
// or buffers the rest: two system calls (and two TCP segments to wake the
// client for) for a response of a few tens of KiB, where one does.
func writeGathered(bw *bufio.Writer, c net.Conn, p []byte) (n int, ok bool, err error) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return 0, false, nil
	}
	g := &tc.gather
	g.tail, g.tailN = p, 0
	err = bw.Flush() // bufio hands its buffer to tc.Write in one call
	n = g.tailN
	g.tail = nil
	return n, true, err
}

// Write implements net.Conn. With a tail set by writeGathered, p and the
// tail go out together (writev); it returns the bytes of p written and
// records those of the tail.
func (c *trackedConn) Write(p []byte) (int, error) {
	g := &c.gather
	if g.tail == nil {
		if c.raw != nil {
			return c.raw.write(p)
		}
		return c.Conn.Write(p)
	}
	g.arr = [2][]byte{p, g.tail}
	g.iov = g.arr[:]
	n64, err := g.iov.WriteTo(c.Conn) // loops until all is written or err
	g.arr, g.iov = [2][]byte{}, nil
	n := int(n64)
	if n > len(p) {
		g.tailN = n - len(p)
		n = len(p)
	}
	return n, err
}
