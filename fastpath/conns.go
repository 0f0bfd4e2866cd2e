// Client connections: the connection limit over all listeners (with the
// reclaiming of idle keep-alive connections), the listener that enforces it
// and rides out descriptor shortages, the accepted connection, its
// lingering close and its reset.

package fastpath

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/sockio"
)

// resetConn makes closing c send a TCP RST, so the client sees an aborted
// response rather than a complete one.
func resetConn(c net.Conn) {
	for {
		switch cc := c.(type) {
		case *guardedTLS:
			c = cc.NetConn()
		case *tls.Conn:
			c = cc.NetConn()
		case *trackedConn:
			c = cc.Conn
		case *net.TCPConn:
			_ = cc.SetLinger(0)
			return
		default:
			return
		}
	}
}

// connLimiter bounds open client connections across listeners and can
// close them all at a forced shutdown. At the limit it makes room by
// closing the keep-alive connection that has been idle longest, as nginx
// does: a client reopens an idle connection for free, while a new client
// kept waiting gets nothing. Safe for concurrent use.
type connLimiter struct {
	sem      chan struct{} // a slot per handed-out connection
	open     atomic.Int64  // accepted and not yet closed
	reclaims atomic.Int64  // idle connections closed to make room
	lastWarn atomic.Int64  // unix ns of the last "limit reached" warning
	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
}

// reclaimWait is how long Accept waits at the limit for a slot before it
// looks for an idle connection to close again.
const reclaimWait = 50 * time.Millisecond

// take waits for a connection slot, closing idle connections to make room;
// false when done closes first. A free slot wins over a closed done: the
// connection was already taken from the kernel's queue, which an upgrade's
// new process shares, so closing it would fail a request sent before
// anything stopped.
func (l *connLimiter) take(done <-chan struct{}, log *zerolog.Logger) bool {
	select {
	case l.sem <- struct{}{}:
		return true
	default:
	}
	var t *time.Timer
	for {
		if l.closeIdlest() {
			l.reclaims.Add(1)
			if now := time.Now().UnixNano(); now-l.lastWarn.Load() > int64(time.Minute) {
				l.lastWarn.Store(now)
				log.Warn().Str("event", "max_conns").Int("max_conns", cap(l.sem)).Int64("reclaimed", l.reclaims.Load()).
					Msg("connection limit reached; closing the longest-idle keep-alive connections to admit new ones")
			}
		}
		if t == nil {
			t = time.NewTimer(reclaimWait)
			defer t.Stop()
		} else {
			t.Reset(reclaimWait)
		}
		select {
		case l.sem <- struct{}{}:
			return true
		case <-done:
			return false
		case <-t.C:
		}
	}
}

// closeIdlest closes the connection idle longest between two requests, if
// any is; connections that are new, busy or hijacked are never closed.
func (l *connLimiter) closeIdlest() bool {
	var idlest *trackedConn
	var since int64
	l.mu.Lock()
	for c := range l.conns {
		if at := c.idleSince.Load(); at != 0 && (idlest == nil || at < since) {
			idlest, since = c, at
		}
	}
	l.mu.Unlock()
	if idlest == nil {
		return false
	}
	_ = idlest.Close()
	return true
}

// lingerTime bounds how long a connection closed with an unread request
// body keeps reading (and dropping) what the client still sends; at most
// maxDiscardBytes are read. nginx's lingering close, for the same reason:
// closing a socket with unread data sends a reset, which can destroy the
// answer (a 413, say) before the client has read it.
const lingerTime = 2 * time.Second

// lingerOnClose makes closing c a lingering close: send FIN after the
// answer, drop what the client still sends for up to lingerTime, then
// close. For connections whose request body was left unread.
func lingerOnClose(c net.Conn) {
	if tc := tracked(c); tc != nil {
		tc.linger.Store(true)
	}
}

// tracked returns the accepted connection under c (a trackedConn, under
// TLS and the head guard's TLS wrapper if any), or nil.
func tracked(c net.Conn) *trackedConn {
	if gc, ok := c.(*guardedTLS); ok {
		c = gc.Conn
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

// clientEOF reports whether the client connection c (under TLS, if any)
// met the end of the client's stream (a FIN or a reset); see
// sockio.ClientConn.SawEnd. It is
// for the goroutine reading c.
func clientEOF(c net.Conn) bool {
	if gc, ok := c.(*guardedTLS); ok && gc.eof {
		return true // close_notify: the TLS stream ended, the TCP one may not have
	}
	tc := tracked(c)
	return tc != nil && tc.SawEnd()
}

// connState is fasthttp's ConnState hook: it marks connections idle between
// requests, for the limiter, and arms the head guard while a head is read.
func connState(c net.Conn, st fasthttp.ConnState) {
	if g := guardOf(c); g != nil {
		g.pending.Store(st == fasthttp.StateActive)
	}
	tc := tracked(c)
	if tc == nil || tc.parked.Load() {
		return // a parked connection stays idle since it was
	}
	if st == fasthttp.StateIdle {
		tc.idleSince.Store(sockio.Monotonic())
	} else {
		tc.idleSince.Store(0)
	}
}

func newConnLimiter(n int) *connLimiter {
	return &connLimiter{sem: make(chan struct{}, n), conns: map[*trackedConn]struct{}{}}
}

func (l *connLimiter) closeAll() {
	l.mu.Lock()
	cs := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// limitedListener hands out a connection only while the limiter has room
// (closing idle keep-alive connections to make some): past MaxConns with
// none idle, one accepted connection waits for a slot and the others in
// the kernel's accept queue. It also rides out a
// shortage of file descriptors or kernel memory (EMFILE, ENFILE, ENOBUFS,
// ENOMEM), which fasthttp would take as the listener's end: it logs the
// first failure, retries with a backoff from 5 ms to 1 s (the connections
// wait in the accept queue meanwhile), and logs once more when accepting
// works again. Accept is called from one goroutine.
type limitedListener struct {
	net.Listener
	lim       *connLimiter
	log       zerolog.Logger
	done      chan struct{}
	closeOnce sync.Once
	bufSize   int      // fasthttp's ReadBufferSize, for the head guard
	park      *parking // nil: connections are not parked (TLS, or parking off)
}

const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func (l *limitedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && resourceShortage(err) {
		c, err = l.retryAccept(err)
	}
	if err != nil {
		return nil, err
	}
	// The slot is taken after the accept, so idle connections are closed
	// only for a client that is really waiting.
	if !l.lim.take(l.done, &l.log) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{ClientConn: sockio.NewClientConn(c), lim: l.lim, guard: headGuard{bufSize: l.bufSize}, park: l.park}
	l.lim.open.Add(1)
	l.lim.mu.Lock()
	l.lim.conns[tc] = struct{}{}
	l.lim.mu.Unlock()
	return tc, nil
}

// retryAccept keeps accepting after a resource shortage until it works,
// another error comes or the listener closes.
func (l *limitedListener) retryAccept(first error) (net.Conn, error) {
	l.log.Error().Str("event", "accept_failing").Err(first).Str("addr", l.Addr().String()).
		Msg("cannot accept connections; retrying, new connections wait in the kernel's accept queue")
	since := time.Now()
	failures := 1
	backoff := minAcceptBackoff
	t := time.NewTimer(backoff)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err == nil || !resourceShortage(err) {
			l.log.Warn().Str("event", "accept_recovered").Str("addr", l.Addr().String()).Int("failures", failures).
				Dur("after", time.Since(since)).Msg("accepting connections again")
			return c, err
		}
		failures++
		backoff = min(2*backoff, maxAcceptBackoff)
		t.Reset(backoff)
	}
}

// resourceShortage reports whether an accept failed for want of file
// descriptors or kernel memory: a passing condition, not the listener's end.
func resourceShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// Close closes the listener once; later calls (fasthttp's Shutdown after
// StopAccepting) do nothing and return nil.
func (l *limitedListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// trackedConn is an accepted client connection: it gives its limiter slot
// back when closed, and is read and written through sockio (raw system
// calls, gathered writes). Safe for concurrent use as a net.Conn is; it
// must not be copied.
type trackedConn struct {
	sockio.ClientConn
	lim       *connLimiter
	closed    atomic.Bool
	idleSince atomic.Int64 // since when (sockio.Monotonic ns) it waits for a next request; 0: new, busy or hijacked
	linger    atomic.Bool  // see lingerOnClose
	guard     headGuard    // armed only when fasthttp reads this connection itself (not under TLS)

	park     *parking      // nil: never parked (see parkAfter)
	parkNext atomic.Bool   // the next Close parks instead (an idle read failed with errParked)
	parked   atomic.Bool   // waiting in park's poller, served by no goroutine
	parkID   atomic.Uint64 // its id in the poller
	// idleDeadline is fasthttp's read deadline for the next request,
	// held for idleRead; owned by the serving goroutine.
	idleDeadline time.Time
	// headDeadline is the first read deadline set after idleRead returned
	// the first bytes of a request (fasthttp's deadline for the rest of its
	// head), held until a read needs it (headPending): most heads come whole
	// in that first read. headNext: the next deadline set is that one.
	headDeadline time.Time
	headPending  atomic.Bool
	headNext     atomic.Bool
	// waitDeadline is the deadline (sockio.Monotonic ns) idleRead left on
	// the socket for a wait for a next request (the park deadline, or
	// fasthttp's idle deadline on a connection that is not parked), 0 once
	// any other read deadline replaced it: the next wait may keep it
	// (parkSlack, idleSlack).
	waitDeadline atomic.Int64

	holdClose atomic.Bool // the next Close does nothing: a polled tunnel goes on with it (tunnelpoll.go)

	// xff is the client's X-Forwarded-For entry in each forwardedForFormat,
	// formatted by its first request that needs it; owned by the serving
	// goroutine.
	xff [2][]byte
}

// forwardedFor returns the client's X-Forwarded-For entry (remote, the
// request's RemoteAddr, in format), formatted once per connection: its
// peer does not change, and formatting the address cost about 1.5 % of
// loopgate's user-space CPU per small GET.
func (c *trackedConn) forwardedFor(remote net.Addr, format configload.ForwardedForFormat) []byte {
	i := 0
	if format == configload.ForwardedForIP {
		i = 1
	}
	if c.xff[i] == nil {
		c.xff[i] = appendForwardedFor(nil, remote, format)
	}
	return c.xff[i]
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if since := c.idleSince.Load(); since != 0 {
		return c.idleRead(p, since)
	}
	if c.headPending.CompareAndSwap(true, false) {
		c.waitDeadline.Store(0)
		_ = c.Conn.SetReadDeadline(c.headDeadline)
	}
	return c.guard.read(p, c.ClientConn.Read)
}

// Close closes the connection, or parks it when its serving goroutine
// ends because it was idle (see parkAfter).
func (c *trackedConn) Close() error {
	if c.holdClose.CompareAndSwap(true, false) {
		return nil
	}
	if c.parkNext.CompareAndSwap(true, false) && c.parkNow() {
		return nil
	}
	c.unpark()
	if tcp, ok := c.Conn.(*net.TCPConn); ok && c.linger.CompareAndSwap(true, false) {
		drainBeforeClose(tcp)
	}
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.lim.mu.Lock()
		delete(c.lim.conns, c)
		c.lim.mu.Unlock()
		c.lim.open.Add(-1)
		<-c.lim.sem
	}
	return err
}

// drainBeforeClose half-closes c and reads and drops what the client still
// sends, until it closes its side, lingerTime passes or maxDiscardBytes
// were read.
func drainBeforeClose(c *net.TCPConn) {
	if c.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for read := 0; read < maxDiscardBytes; {
		n, err := c.Read(*bp)
		read += n
		if err != nil {
			return
		}
	}
}
