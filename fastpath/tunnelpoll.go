// Polled tunnels: a WebSocket tunnel between a plain client connection and
// its backend connection that holds no goroutine and no buffer while idle.

package fastpath

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopgate/loopgate/internal/sockio"
)

// A polledTunnel relays a tunnel's two directions with the server's
// sockio.Poller: each direction waits for its source to become readable in
// the poller, then a goroutine with a pooled buffer copies what is there to
// the other side, and waits in the poller again once the source has
// nothing more (a would-block read). An idle tunnel is then two sockets in
// an epoll set, the exchange and this struct: no goroutine, no buffer
// (two goroutines and four buffers in the relay of websocket.go, about 33
// KiB of RSS each at 5,000 tunnels). fasthttp's hijack goroutine returns
// at once; the client connection's close by fasthttp is held back
// (trackedConn.holdClose) and the request context is not used after it
// (the observer gets a snapshot). Only plain TCP on both sides: TLS reads
// through its own buffers, so readiness of its socket says nothing.
//
// Ends are those of the relay in websocket.go: when a source ends (FIN,
// reset) its destination is sent the end of its stream and both are closed
// when the other side ends too, or tunnelLinger later; a failed write to
// the backend makes the client's bytes dropped from then on (the backend
// is gone; the client is read until it ends or the linger passes). With
// TunnelIdleTimeout both sides are closed after that long without a byte
// either way; a write to the client that waits SendTimeout closes both at
// once, the client's with a reset, as does a write to the app that waits
// requestTimeout, the app's with a reset.
type polledTunnel struct {
	x      *exchange
	s      *Server
	poller *sockio.Poller
	client *trackedConn
	src    [2]*net.TCPConn // dirC2B: the client's socket, dirB2C: the backend's
	dst    [2]net.Conn     // where each direction writes
	idle   time.Duration
	last   atomic.Int64    // unix ns of the last byte read either way
	bytes  [2]atomic.Int64 // relayed each way

	mu       sync.Mutex
	ids      [2]uint64 // poller ids of the directions waiting now
	ended    [2]bool   // the direction's source ended (or its destination failed)
	drop     bool      // the backend failed a write: the client's bytes are dropped
	active   int       // pump goroutines running, and a closeAll closing
	closed   bool
	finished bool
	linger   *time.Timer
	idleT    *time.Timer
}

const (
	dirC2B = 0 // client → backend
	dirB2C = 1 // backend → client
)

// startPolledTunnel runs x's tunnel in the poller, if both sides allow it,
// and returns whether it does. hj is fasthttp's hijacked connection, client
// the connection under it; the 101 head has been written.
func (x *exchange) startPolledTunnel(hj net.Conn, client net.Conn) bool {
	s := x.s
	tc, ok := client.(*trackedConn)
	if !ok || tc.park == nil || !x.detached {
		return false
	}
	ctcp, ok1 := tc.ClientConn.Conn.(*net.TCPConn)
	bc, ok2 := x.conn.(*sockio.BackendConn)
	if !ok1 || !ok2 {
		return false
	}
	t := &polledTunnel{x: x, s: s, poller: tc.park.poller, client: tc, idle: s.cfg.TunnelIdleTimeout}
	t.src = [2]*net.TCPConn{ctcp, bc.TCPConn}
	t.dst = [2]net.Conn{bc, tc}
	t.last.Store(time.Now().UnixNano())

	// What the response head's read buffered of the backend's stream goes
	// first, and the buffer back to its pool.
	if n := x.br.Buffered(); n > 0 {
		b, _ := x.br.Peek(n)
		if _, err := tc.Write(b); err != nil {
			return false // the goroutine relay meets the same error and ends
		}
		t.bytes[dirB2C].Add(int64(n))
		_, _ = x.br.Discard(n)
	}
	x.up.hc.ReleaseReader(x.br)
	x.br = nil
	// Likewise what fasthttp's reader holds of the client's stream (a
	// client should send nothing before the 101, but may): read through hj
	// until a read would wait, which a deadline in the past turns into a
	// timeout at once.
	_ = tc.SetReadDeadline(time.Unix(1, 0))
	bp := bufPool.Get().(*[]byte)
	for {
		n, err := hj.Read(*bp)
		if n > 0 {
			if _, werr := bc.Write((*bp)[:n]); werr != nil {
				t.drop = true
			}
			t.bytes[dirC2B].Add(int64(n))
		}
		if err != nil {
			break
		}
	}
	bufPool.Put(bp)
	_ = tc.SetReadDeadline(time.Time{})

	x.snapshotForObserver()
	tc.holdClose.Store(true) // fasthttp closes it when the hijack handler returns
	s.mu.Lock()
	if _, ok := s.tunnels[x]; ok {
		s.tunnels[x] = tunnelCloser{tc, t}
	}
	s.mu.Unlock()
	if t.idle > 0 {
		t.mu.Lock()
		t.idleT = time.AfterFunc(t.idle, t.idleCheck)
		t.mu.Unlock()
	}
	tc.park.parks.Add(1) // counts toward the parking sweep's memory release
	t.arm(dirC2B)
	t.arm(dirB2C)
	return true
}

// tunnelCloser is what Shutdown closes for a polled tunnel: both sides.
type tunnelCloser struct {
	net.Conn
	t *polledTunnel
}

func (c tunnelCloser) Close() error { c.t.closeAll(); return nil }

// arm waits for direction d's source to become readable.
func (t *polledTunnel) arm(d int) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	id := t.poller.NewID()
	t.ids[d] = id
	t.mu.Unlock()
	if err := t.poller.Add(t.src[d], id, func() { t.ready(d) }); err != nil {
		t.closeAll()
	}
}

// ready is the poller's callback: d's source is readable.
func (t *polledTunnel) ready(d int) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.ids[d] = 0
	t.active++
	t.mu.Unlock()
	t.poller.Detach(t.src[d])
	go t.pump(d)
}

// pump copies what d's source has to its destination, then waits in the
// poller again, or ends the direction.
func (t *polledTunnel) pump(d int) {
	defer t.pumpDone()
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	for {
		n, err := sockio.TryRead(t.src[d], buf)
		if n > 0 {
			t.last.Store(time.Now().UnixNano())
			t.bytes[d].Add(int64(n))
			t.mu.Lock()
			drop := d == dirC2B && t.drop
			t.mu.Unlock()
			if !drop {
				// As the goroutine relay: the client has
				// --send-timeout to take each write, the app
				// requestTimeout.
				if d == dirB2C {
					setDeadline(t.client.SetWriteDeadline, t.s.cfg.SendTimeout)
				} else {
					setDeadline(t.dst[d].SetWriteDeadline, t.x.spec.RequestTimeout)
				}
				if _, werr := t.dst[d].Write(buf[:n]); werr != nil {
					if d == dirC2B && errors.Is(werr, os.ErrDeadlineExceeded) {
						bufPool.Put(bp)
						t.x.logStalledApp()
						if bc, ok := t.dst[d].(*sockio.BackendConn); ok {
							_ = bc.TCPConn.SetLinger(0)
						}
						t.closeAll()
						return
					}
					if d == dirC2B {
						t.mu.Lock()
						t.drop = true // the backend is gone: read the client to its end
						t.mu.Unlock()
						continue
					}
					bufPool.Put(bp)
					if errors.Is(werr, os.ErrDeadlineExceeded) {
						// As the goroutine relay: both sides close
						// now, the client with a reset.
						t.x.logStalledClient()
						resetConn(t.client)
						t.closeAll()
						return
					}
					t.end(d) // the client is gone
					return
				}
			}
			continue
		}
		bufPool.Put(bp)
		if err == sockio.ErrWouldBlock {
			t.arm(d)
			return
		}
		t.end(d)
		return
	}
}

func (t *polledTunnel) pumpDone() {
	t.mu.Lock()
	t.active--
	t.mu.Unlock()
	t.maybeFinish()
}

// end ends direction d: its destination is sent the end of its stream, and
// the tunnel closes once both directions ended or tunnelLinger later.
func (t *polledTunnel) end(d int) {
	endWrite(t.dst[d])
	t.mu.Lock()
	t.ended[d] = true
	both := t.ended[dirC2B] && t.ended[dirB2C]
	if !both && t.linger == nil && !t.closed {
		t.linger = time.AfterFunc(tunnelLinger, t.closeAll)
	}
	t.mu.Unlock()
	if both {
		t.closeAll()
	}
}

// idleCheck closes the tunnel after TunnelIdleTimeout without a byte.
func (t *polledTunnel) idleCheck() {
	since := time.Since(time.Unix(0, t.last.Load()))
	if since < t.idle {
		t.mu.Lock()
		if !t.closed {
			t.idleT.Reset(t.idle - since)
		}
		t.mu.Unlock()
		return
	}
	t.s.log.Debug().Str("app", t.x.route.name).Int("pid", t.x.pid).Dur("tunnel_idle_timeout", t.idle).Msg("idle WebSocket tunnel closed")
	t.closeAll()
}

// closeAll closes both sides once; the exchange finishes when no pump
// runs any more.
func (t *polledTunnel) closeAll() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.active++ // the exchange is not finished while this closes it
	ids := t.ids
	if t.linger != nil {
		t.linger.Stop()
	}
	if t.idleT != nil {
		t.idleT.Stop()
	}
	t.mu.Unlock()
	for d, id := range ids {
		if id != 0 {
			t.poller.Remove(id, t.src[d])
		}
	}
	_ = t.client.Close()
	t.x.closeBackend()
	t.pumpDone()
}

// maybeFinish finishes the exchange once the tunnel is closed and no pump
// runs.
func (t *polledTunnel) maybeFinish() {
	t.mu.Lock()
	if !t.closed || t.active > 0 || t.finished {
		t.mu.Unlock()
		return
	}
	t.finished = true
	t.mu.Unlock()
	x := t.x
	x.bytesIn = t.bytes[dirC2B].Load()
	x.bytesOut = t.bytes[dirB2C].Load()
	x.bodyEnd = true
	t.s.removeTunnel(x)
	x.finish()
}
