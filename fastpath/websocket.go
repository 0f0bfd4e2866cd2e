// WebSocket tunnels: the upgraded connection relayed both ways.

package fastpath

import (
	"io"
	"net"
	"sync"
	"time"
)

// bufPool holds the 32 KiB buffers of body pumps and WebSocket tunnels.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// startTunnel takes over the client connection after the backend accepted a
// WebSocket upgrade with 101. The 101 head goes to the client as the backend
// sent it (with loopgate's Date), then bytes are relayed both ways until
// either side closes. The relay copies through buffers and never splices: a
// loopback socket may be in the eBPF sockmap, which must not be read with
// splice(2) (DESIGN.md §5).
func (x *exchange) startTunnel() bool {
	x.upgraded = true
	x.backendOK = false
	rh := &x.ctx.Response.Header
	rh.SetProtocol(strHTTP11)
	rh.Del("Date")
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
// when it answers with its own end or tunnelLinger passes. The hijacked
// connection's Close does nothing until this function returns (fasthttp
// closes it then), so the connection under it is the one half-closed and
// closed here, and the one Shutdown closes.
func (x *exchange) tunnel(hj net.Conn) {
	s := x.s
	client := hijacked(hj)
	s.addTunnel(x, client)
	defer func() {
		s.removeTunnel(x)
		x.finish()
	}()
	// requestTimeout bounded the wait for the 101 and must not cut the
	// tunnel: a tunnel has no timeout of its own and lasts as long as both
	// sides keep it open (keep-alive is the WebSocket's own pings).
	_ = x.conn.SetDeadline(time.Time{})
	if _, err := client.Write(x.head); err != nil {
		x.aborted = true
		_ = client.Close()
		_ = x.conn.Close()
		return
	}
	done := make(chan int64, 1)
	go func() {
		// backend → client, starting with what the head read buffered.
		n, _ := relay(client, x.br)
		endWrite(client)
		_ = client.SetReadDeadline(time.Now().Add(tunnelLinger))
		done <- n
	}()
	in, clientEnded := relay(x.conn, hj) // client → backend
	x.bytesIn = in
	endWrite(x.conn)
	_ = x.conn.SetReadDeadline(time.Now().Add(tunnelLinger))
	x.bytesOut = <-done
	if !clientEnded {
		// The backend is gone and the client still talks: read until it
		// closes (the client's read deadline is set by now), since closing
		// a socket with unread input resets it and drops what is still
		// queued toward the client, the backend's close frame among it.
		discard(hj)
	}
	_ = client.Close()
	_ = x.conn.Close()
	x.bodyEnd = true
}

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

// relay copies src to dst through a pooled buffer until either fails, and
// returns the bytes copied and whether it was src that ended.
func relay(dst net.Conn, src io.Reader) (int64, bool) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total, false
			}
			total += int64(n)
		}
		if err != nil {
			return total, true
		}
	}
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
