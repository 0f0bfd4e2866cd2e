// WebSocket tunnels: the upgraded connection relayed both ways.

package fastpath

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/internal/sockio"
)

// bufPool holds the 32 KiB buffers of body pumps and WebSocket tunnels.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// startTunnel takes over the client connection after the backend accepted a
// WebSocket upgrade with 101. The 101 head goes to the client as the backend
// sent it (with loopgate's Date), then bytes are relayed both ways until
// either side closes. The relay copies through buffers and never splices: a
// loopback socket may be in the eBPF sockmap, which must not be read with
// splice(2) (DESIGN.md §5).
//
// The backend connection leaves the pool (upstream.detachTunnel): a tunnel
// counts against MaxTunnelsPerBackend, not MaxConnsPerBackend. Past that
// bound the client gets 503 at once and the backend's connection is closed.
func (x *exchange) startTunnel() bool {
	rh := &x.ctx.Response.Header
	switch x.up.detachTunnel(x.handle, x.conn) {
	case tunnelDetached:
		x.handle, x.detached = nil, true
	case tunnelsFull:
		x.s.log.Warn().Str("app", x.route.name).Int("pid", x.pid).Int("max_tunnels", x.s.cfg.MaxTunnelsPerBackend).
			Msg("WebSocket tunnel limit reached: upgrade refused with 503 (--backend-max-tunnels)")
		x.stopPump()
		x.dropConn()
		rh.Reset()
		return x.answerPage(fasthttp.StatusServiceUnavailable, pageServiceUnavailable)
	case tunnelInPool:
		// Not detachable (not a BackendConn): it stays counted in the pool.
	}
	x.upgraded = true
	x.backendOK = false
	rh.SetProtocol(strHTTP11)
	// The backend's Date is left out by AppendBytes, which writes its own.
	x.head = rh.AppendBytes(x.head[:0])
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(x.tunnel)
	return false
}

// tunnelLinger bounds how long a tunnel lingers once one side has ended: the
// other side has been sent the end of the stream (TCP FIN, or TLS
// close_notify) and gets this long to close its side too, which WebSocket
// peers do at once. Then both connections are closed.
const tunnelLinger = time.Second

// tunnel runs on fasthttp's hijack goroutine with the client connection (its
// reads start with anything the client already sent after the request).
//
// When either side ends (a close frame and FIN, a bare FIN, a reset, a
// killed process), the other side is sent the end of its stream at once,
// after everything already relayed to it, and both connections are closed
// when it answers with its own end or tunnelLinger passes. A client that
// takes nothing for SendTimeout is reset and the backend closed at once;
// an app that takes nothing for requestTimeout is reset, and the client
// gets its end.
// The hijacked
// connection's Close does nothing until this function returns (fasthttp
// closes it then), so the connection under it is the one half-closed and
// closed here, and the one Shutdown closes.
func (x *exchange) tunnel(hj net.Conn) {
	s := x.s
	client := hijacked(hj)
	s.addTunnel(x, client)
	polled := false
	defer func() {
		if !polled { // a polled tunnel finishes when it closes
			s.removeTunnel(x)
			x.finish()
		}
	}()
	// requestTimeout bounded the wait for the 101 and must not cut the
	// tunnel: a tunnel has no timeout of its own and lasts as long as both
	// sides keep it open (keep-alive is the WebSocket's own pings).
	_ = x.conn.SetDeadline(time.Time{})
	// Every write to the client, the 101 head's included, has
	// --send-timeout to complete, as a response's body has: a client
	// that stops reading while the app keeps sending would otherwise
	// hold the tunnel (and the app's connection) forever.
	setDeadline(client.SetWriteDeadline, s.cfg.SendTimeout)
	if _, err := client.Write(x.head); err != nil {
		x.aborted = true
		_ = client.Close()
		x.closeBackend()
		return
	}
	x.shedBuffers()
	if x.startPolledTunnel(hj, client) {
		polled = true
		return
	}
	var idle *tunnelIdle
	if d := s.cfg.TunnelIdleTimeout; d > 0 {
		idle = &tunnelIdle{d: d}
		idle.last.Store(time.Now().UnixNano())
	}
	done := make(chan int64, 1)
	go func() {
		// backend → client, starting with what the head read buffered.
		n, _, stalled := relay(client, x.br, x.conn, idle, s.cfg.SendTimeout)
		idle.end()
		if stalled {
			// Nothing more can reach this client: reset it (its send
			// queue is dropped, not kept trying), which also ends the
			// client's read below at once, and with it the tunnel.
			x.logStalledClient()
			resetConn(client)
			_ = client.Close()
		}
		endWrite(client)
		_ = client.SetReadDeadline(time.Now().Add(tunnelLinger))
		done <- n
	}()
	// client → backend; a write the app takes nothing of for
	// requestTimeout (its inactivity bound) ends the tunnel too.
	in, clientEnded, appStalled := relay(x.conn, hj, client, idle, x.spec.RequestTimeout)
	idle.end()
	if appStalled {
		// The app is reset (nothing sent to it would be read), which
		// ends the read of it above: the client gets what was relayed,
		// then its end.
		x.logStalledApp()
		x.resetBackend()
	}
	x.bytesIn = in
	endWrite(x.conn)
	_ = x.conn.SetReadDeadline(time.Now().Add(tunnelLinger))
	x.bytesOut = <-done
	if idle.expired() {
		s.log.Debug().Str("app", x.route.name).Int("pid", x.pid).Dur("tunnel_idle_timeout", idle.d).Msg("idle WebSocket tunnel closed")
		clientEnded = true // both sides are closed now, not lingered on
	}
	if !clientEnded {
		// The backend is gone and the client still talks: read until it
		// closes (the client's read deadline is set by now), since closing
		// a socket with unread input resets it and drops what is still
		// queued toward the client, the backend's close frame among it.
		discard(hj)
	}
	_ = client.Close()
	x.closeBackend()
	x.bodyEnd = true
}

// closeBackend closes the tunnel's backend connection: a detached one is
// the tunnel's to close and to uncount.
func (x *exchange) closeBackend() {
	if x.detached {
		x.up.closeTunnel(x.conn)
		return
	}
	_ = x.conn.Close()
}

// tunnelIdle is a tunnel's idle timeout (TunnelIdleTimeout), shared by its
// two relays: a read waits until d has passed since the last byte read
// either way. Safe for concurrent use; nil is no timeout.
type tunnelIdle struct {
	d      time.Duration
	last   atomic.Int64 // unix ns of the last byte read either way
	ending atomic.Bool  // a relay returned: the linger deadlines rule
	fired  atomic.Bool
}

// read reads src, whose connection is c, under the idle timeout.
func (t *tunnelIdle) read(c net.Conn, src io.Reader, p []byte) (int, error) {
	if t == nil {
		return src.Read(p)
	}
	for {
		if t.ending.Load() {
			return src.Read(p)
		}
		_ = c.SetReadDeadline(time.Unix(0, t.last.Load()).Add(t.d))
		n, err := src.Read(p)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			return n, err
		}
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || t.ending.Load() {
			return n, err
		}
		if time.Since(time.Unix(0, t.last.Load())) < t.d {
			continue // the other way was busy meanwhile
		}
		t.fired.Store(true)
		return n, err
	}
}

func (t *tunnelIdle) end() {
	if t != nil {
		t.ending.Store(true)
	}
}

func (t *tunnelIdle) expired() bool { return t != nil && t.fired.Load() }

// hijacked returns the connection under fasthttp's hijacked connection,
// whose Close is a no-op while the hijack handler runs.
func hijacked(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return c
}

// endWrite sends the end of the stream on c and keeps its read side open:
// shutdown(SHUT_WR) for TCP (the FIN follows the bytes still queued, where
// a close with unread input would reset them away), close_notify for TLS.
func endWrite(c net.Conn) {
	if tc, ok := c.(*trackedConn); ok {
		c = tc.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// relay copies src (read from srcConn) to dst through a pooled buffer
// until either fails, under the tunnel's idle timeout, each write to dst
// bounded by stall (none for 0), and returns the bytes copied, whether it
// was src that ended and whether a write to dst stalled past its bound.
func relay(dst net.Conn, src io.Reader, srcConn net.Conn, idle *tunnelIdle, stall time.Duration) (total int64, srcEnded, stalled bool) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := idle.read(srcConn, src, buf)
		if n > 0 {
			if stall > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(stall))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, false, errors.Is(werr, os.ErrDeadlineExceeded)
			}
			total += int64(n)
		}
		if err != nil {
			return total, true, false
		}
	}
}

// logStalledApp logs a tunnel ended because the app took nothing of what
// the client sent for requestTimeout.
func (x *exchange) logStalledApp() {
	x.s.log.Debug().Str("app", x.route.name).Int("pid", x.pid).Dur("request_timeout", x.spec.RequestTimeout).
		Msg("WebSocket tunnel closed: the app took nothing for requestTimeout")
}

// resetBackend makes the tunnel's backend connection close with a reset
// and closes it.
func (x *exchange) resetBackend() {
	if bc, ok := x.conn.(*sockio.BackendConn); ok {
		_ = bc.TCPConn.SetLinger(0)
	}
	x.closeBackend()
}

// logStalledClient logs a tunnel ended because its client took nothing of
// what the app sent for --send-timeout.
func (x *exchange) logStalledClient() {
	x.s.log.Debug().Str("app", x.route.name).Int("pid", x.pid).Dur("send_timeout", x.s.cfg.SendTimeout).
		Msg("WebSocket tunnel closed: the client took nothing for --send-timeout")
}

// discard reads and drops src until it fails.
func discard(src io.Reader) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		if _, err := src.Read(*bp); err != nil {
			return
		}
	}
}
