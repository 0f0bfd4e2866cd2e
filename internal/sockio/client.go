// ClientConn: an accepted client connection's reads and writes, and the
// gathered write of a buffered head with a body chunk.

package sockio

import (
	"bufio"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// ClientConn is an accepted client connection read and written through
// RawIO when it is TCP, whose writes can carry a second buffer along
// (WriteGathered). It is meant to be embedded by value in the listener's
// connection type, made once per connection by NewClientConn. Read and
// Write may run in two goroutines at once; WriteGathered only in the one
// serving the connection. A ClientConn must not be copied once in use.
type ClientConn struct {
	net.Conn
	raw      *RawIO      // nil: not TCP, the Conn's own Read and Write are used
	gather   gatherState // owned by the connection's serving goroutine
	ended    bool        // a Read met the stream's end: the client half-closed, closed or reset
	deadline atomic.Bool // a write deadline may be set (SetWriteTimeout unsets it)
}

// NewClientConn wraps c.
func NewClientConn(c net.Conn) ClientConn {
	return ClientConn{Conn: c, raw: NewRawIO(c)}
}

// gatherState lets WriteGathered add a body chunk to the next Write.
type gatherState struct {
	tail  []byte    // written after the bytes of the next Write
	tailN int       // bytes of tail written
	arr   [2][]byte // backs iov, so a gathered write allocates nothing
	iov   net.Buffers
}

// Read implements net.Conn through RawIO.
func (c *ClientConn) Read(p []byte) (n int, err error) {
	if c.raw == nil {
		n, err = c.Conn.Read(p)
	} else {
		n, err = c.raw.Read(p)
	}
	if err != nil && !isTimeout(err) {
		c.ended = true
	}
	return n, err
}

// SawEnd reports whether a Read met the end of the client's stream: its
// FIN (io.EOF), or a reset or any other failure after which nothing more
// can be read. A read deadline passing (fasthttp's timeouts, parking) does
// not end the stream. It is for the goroutine that reads, after its Read:
// a reader above (a parser) may turn an early end into a clean one (fasthttp
// ends a chunked body cleanly at a reset while it reads the trailer
// section), and this tells them apart.
func (c *ClientConn) SawEnd() bool { return c.ended }

// SetWriteTimeout gives each later Write (and WriteGathered) d to make
// progress when it has to wait for the client (RawIO.SetWriteTimeout),
// replacing the write deadline; SetWriteDeadline replaces it in turn. On a
// connection that is not TCP it sets the deadline d from now.
func (c *ClientConn) SetWriteTimeout(d time.Duration) error {
	if c.raw == nil {
		if d == 0 {
			return c.Conn.SetWriteDeadline(time.Time{})
		}
		return c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	var err error
	if c.deadline.Swap(false) {
		err = c.Conn.SetWriteDeadline(time.Time{})
	}
	c.raw.SetWriteTimeout(d)
	return err
}

// SetWriteDeadline implements net.Conn; it ends a write timeout.
func (c *ClientConn) SetWriteDeadline(t time.Time) error {
	if c.raw != nil {
		c.raw.SetWriteTimeout(0)
		c.deadline.Store(!t.IsZero())
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline implements net.Conn; it ends a write timeout.
func (c *ClientConn) SetDeadline(t time.Time) error {
	if c.raw != nil {
		c.raw.SetWriteTimeout(0)
		c.deadline.Store(!t.IsZero())
	}
	return c.Conn.SetDeadline(t)
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// WriteGathered writes what bw holds followed by p with one writev(2) and
// returns how many bytes of p were written. bw must be a writer whose
// Flush hands its whole buffer to c.Write in one call.
//
// Why: fasthttp has written the response head into bw. When p does not fit
// in what is left of bw, bufio fills the buffer, writes it and then writes
// or buffers the rest: two system calls (and two TCP segments to wake the
// client for) for a response of a few tens of KiB, where one does.
func (c *ClientConn) WriteGathered(bw *bufio.Writer, p []byte) (int, error) {
	g := &c.gather
	g.tail, g.tailN = p, 0
	err := bw.Flush() // bufio hands its buffer to c.Write in one call
	n := g.tailN
	g.tail = nil
	return n, err
}

// Write implements net.Conn. With a tail set by WriteGathered, p and the
// tail go out together (writev); it returns the bytes of p written and
// records those of the tail.
func (c *ClientConn) Write(p []byte) (int, error) {
	g := &c.gather
	if g.tail == nil {
		if c.raw != nil {
			return c.raw.Write(p)
		}
		return c.Conn.Write(p)
	}
	g.arr = [2][]byte{p, g.tail}
	g.iov = g.arr[:]
	var d time.Duration
	if c.raw != nil {
		d = c.raw.WriteTimeout()
	}
	if d > 0 {
		// writev goes through the net.Conn, which knows deadlines only.
		_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	n64, err := g.iov.WriteTo(c.Conn) // loops until all is written or err
	if d > 0 {
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
	g.arr, g.iov = [2][]byte{}, nil
	n := int(n64)
	if n > len(p) {
		g.tailN = n - len(p)
		n = len(p)
	}
	return n, err
}
