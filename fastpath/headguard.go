// The head guard: a request head whose end is marked with a bare LF is
// refused at once, where fasthttp would wait for more of it.

package fastpath

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
)

// errBareLFHead is the read error that ends a connection whose request
// head ends in a bare LF; fasthttp passes it to serveError (400).
var errBareLFHead = errors.New("request head ended with a bare LF")

// headGuard watches a client connection's reads for the one head fasthttp
// cannot refuse by itself: one whose blank line, or the line before it,
// ends in a bare LF ("Host: a\n\n", "Host: a\r\n\n", "Host: a\n\r\n").
// fasthttp's parser (v1.74) finds the end of such a head but then looks
// for CRLFCRLF, asks for more bytes, and the client, which has sent its
// whole request, gets 408 after --header-read-timeout. A bare LF anywhere
// else in a head is refused by scanRequestHeaders once the head is read.
//
// How it knows: while fasthttp reads a head (pending: from ConnState
// StateActive until the handler or the Expect handler runs), a read into
// fasthttp's buffered reader that is shorter than that reader's buffer is
// a refill with the bytes of the unfinished head still held (bufio slides
// them to the front, so len(p) = buffer size - held bytes); body reads
// before the handler always offer the whole buffer or more. If the last
// bytes read, all inside what is held, end in a bare-LF blank line, the
// head can only be refused: the read fails with errBareLFHead before it
// would block. The guard costs a flag test and a copy of four bytes per
// read.
//
// A headGuard is read and written by whichever goroutine reads its
// connection (fasthttp's serving goroutine, the body pump, a WebSocket
// tunnel after a hijack), one at a time; pending is atomic so that
// ConnState and the handler may set it from another one.
type headGuard struct {
	pending atomic.Bool
	bufSize int     // fasthttp's ReadBufferSize: the size of its buffered reader
	last    [4]byte // the last bytes read, newest last
	nLast   int     // valid bytes at the end of last
}

// check fails a read into p that would wait for more of a head that ends
// in a bare LF.
func (g *headGuard) check(p []byte) error {
	if !g.pending.Load() || len(p) >= g.bufSize {
		return nil
	}
	held := g.bufSize - len(p)
	l := &g.last
	switch {
	case held >= 2 && g.nLast >= 2 && l[2] == '\n' && l[3] == '\n':
		return errBareLFHead // "\n\n", "\r\n\n"
	case held >= 4 && g.nLast >= 4 && l[0] != '\r' && l[1] == '\n' && l[2] == '\r' && l[3] == '\n':
		return errBareLFHead // "x\n\r\n"
	}
	return nil
}

// saw records the bytes a read returned.
func (g *headGuard) saw(b []byte) {
	if len(b) >= len(g.last) {
		copy(g.last[:], b[len(b)-len(g.last):])
		g.nLast = len(g.last)
		return
	}
	copy(g.last[:], g.last[len(b):])
	copy(g.last[len(g.last)-len(b):], b)
	g.nLast = min(g.nLast+len(b), len(g.last))
}

// read is a guarded Read through r.
func (g *headGuard) read(p []byte, r func([]byte) (int, error)) (int, error) {
	if err := g.check(p); err != nil {
		return 0, err
	}
	n, err := r(p)
	if n > 0 {
		g.saw(p[:n])
	}
	return n, err
}

// guardedTLS is a TLS client connection served by fasthttp, with its head
// guard (on a plain connection, trackedConn has it).
type guardedTLS struct {
	*tls.Conn
	guard headGuard
	eof   bool // a Read returned io.EOF: the client's close_notify (see clientEOF)
}

func (c *guardedTLS) Read(p []byte) (int, error) {
	n, err := c.guard.read(p, c.Conn.Read)
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// guardedListener hands out its TLS connections as guardedTLS.
type guardedListener struct {
	net.Listener
	bufSize int
}

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*tls.Conn); ok {
		return &guardedTLS{Conn: tc, guard: headGuard{bufSize: l.bufSize}}, nil
	}
	return c, err
}

// guardOf returns the head guard of a connection fasthttp serves, or nil.
func guardOf(c net.Conn) *headGuard {
	switch cc := c.(type) {
	case *trackedConn:
		return &cc.guard
	case *guardedTLS:
		return &cc.guard
	}
	return nil
}

// headRead marks the end of a head: the reads that follow are its body's.
func headRead(c net.Conn) {
	if g := guardOf(c); g != nil {
		g.pending.Store(false)
	}
}
