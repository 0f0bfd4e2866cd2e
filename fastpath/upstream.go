// Upstreams: the keep-alive connection pool to one backend process.

package fastpath

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/internal/sockio"
	"github.com/loopgate/loopgate/supervisor"
)

// upstream is the forwarder's state for one backend process: a
// fasthttp.HostClient used as the keep-alive connection pool to the
// process's loopback port (bounded by MaxConns, waiting up to
// MaxConnWaitTimeout for a free connection, closing connections idle longer
// than MaxIdleConnDuration, LIFO so the warmest connection is reused).
//
// fastpath writes the request head and reads the response itself over the
// pooled connections instead of calling HostClient.Do, because Do cannot
// forward the way the hosting model needs: its read deadline covers the whole
// streamed response (requestTimeout is an inactivity timeout), it swallows
// 1xx responses (103 Early Hints is relayed), it re-serialises the request
// target from the parsed URI (the target goes byte for byte), and it gives no
// way to tell "nothing reached the backend" (retry) from "the body started
// flowing" (no retry). The request-level knobs below (header names and path
// not normalised, no default User-Agent) are set anyway so that any use of
// Do on this client would forward as faithfully.
//
// An upstream is safe for concurrent use; it must not be copied.
type upstream struct {
	_      noCopy
	hc     fasthttp.HostClient
	ops    poolOps
	closed atomic.Bool
	// busy counts the connections handed out by get and not yet given back
	// by put, drop or detachTunnel: requests on this process now.
	busy atomic.Int64
	// tunnels counts the WebSocket tunnels open to this process: their
	// connections left the pool (detachTunnel), bounded by
	// MaxTunnelsPerBackend instead of MaxConnsPerBackend.
	tunnels atomic.Int64
	// owner is the app whose requests use this process, set by the first
	// one (route.adopt); nil until then.
	owner atomic.Pointer[route]
	// h2 is the h2c pool (h2c.go), made by the first request to an app
	// with backendProtocol="h2c"; nil until then.
	h2 atomic.Pointer[h2cPool]
	// bulk is the pool for uploads that bypass the sockmap
	// (bypassesSockmap), whose connections stay out of it; nil without
	// Config.Sockmap. Its connections count in busy, and it is taken only
	// while busy is under MaxConnsPerBackend (pool).
	bulk *bulkPool
	cfg  *Config
}

// bulkPool is a second keep-alive pool to the same process.
type bulkPool struct {
	hc  fasthttp.HostClient
	ops poolOps
}

// conns counts the upstream's open HTTP/1.1 connections, both pools.
func (u *upstream) conns() int {
	n := u.hc.ConnsCount()
	if u.bulk != nil {
		n += u.bulk.hc.ConnsCount()
	}
	return n
}

// poolOps reaches HostClient's exported pool methods, whose connection type
// is unexported in fasthttp, through closures made once per upstream.
type poolOps struct {
	acquire func() (handle any, conn net.Conn, lastUse time.Time, err error)
	release func(handle any)
	discard func(handle any)
}

type pooledConn interface {
	Conn() net.Conn
	LastUseTime() time.Time
}

func newPoolOps[C pooledConn](acquire func(time.Duration, bool) (C, error), release, discard func(C)) poolOps {
	return poolOps{
		acquire: func() (any, net.Conn, time.Time, error) {
			c, err := acquire(0, false)
			if err != nil {
				return nil, nil, time.Time{}, err
			}
			// A connection that was never released has a zero LastUseTime:
			// it was dialed for this request.
			return c, c.Conn(), c.LastUseTime(), nil
		},
		release: func(h any) { release(h.(C)) },
		discard: func(h any) { discard(h.(C)) },
	}
}

func newUpstream(addr string, cfg *Config) *upstream {
	u := &upstream{cfg: cfg}
	initPool(&u.hc, &u.ops, addr, cfg, nil)
	if sm := cfg.Sockmap; sm != nil {
		u.bulk = &bulkPool{}
		initPool(&u.bulk.hc, &u.bulk.ops, addr, cfg, func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = sm.Exclude(int(fd)) }); cerr != nil {
				return cerr
			}
			return err
		})
	}
	return u
}

// initPool sets up a keep-alive pool to addr whose connections are dialed
// with control (nil: none) run on each socket before it connects.
func initPool(hc *fasthttp.HostClient, ops *poolOps, addr string, cfg *Config, control func(network, address string, rc syscall.RawConn) error) {
	d := net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1, Control: control}
	*hc = fasthttp.HostClient{
		Addr: addr,
		Dial: func(a string) (net.Conn, error) {
			c, err := d.Dial("tcp", a)
			if err != nil {
				return nil, err
			}
			bc, err := sockio.NewBackendConn(c.(*net.TCPConn))
			if err != nil {
				c.Close()
				return nil, err
			}
			return bc, nil
		},
		MaxConns:                      cfg.MaxConnsPerBackend,
		MaxConnWaitTimeout:            cfg.BackendQueueTimeout,
		MaxIdleConnDuration:           cfg.BackendIdleTimeout,
		ReadBufferSize:                cfg.MaxResponseHeaderBytes,
		WriteBufferSize:               32 << 10,
		ConnPoolStrategy:              fasthttp.LIFO,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
	}
	*ops = newPoolOps(hc.AcquireConn, hc.ReleaseConn, hc.CloseConn)
}

// pool returns the pool a request takes its connection from: the bulk
// pool for an upload the sockmap would carry at a loss (sockmap.go), else
// the main one. The bulk pool is taken only while fewer than
// MaxConnsPerBackend requests are on the process (busy counts both pools):
// otherwise its own cap would let MaxConnsPerBackend more requests reach
// the process at once, and the upload waits for the main pool like any
// request, redirected.
func (u *upstream) pool(bulkUpload bool) *poolOps {
	if bulkUpload && u.bulk != nil && u.busy.Load() < int64(u.cfg.MaxConnsPerBackend) {
		return &u.bulk.ops
	}
	return &u.ops
}

// get returns a pooled or freshly dialed connection to the backend, with
// the time it was last released (zero: dialed for this request).
func (u *upstream) get(p *poolOps) (handle any, conn net.Conn, lastUse time.Time, err error) {
	handle, conn, lastUse, err = p.acquire()
	if err == nil {
		u.busy.Add(1)
	}
	return handle, conn, lastUse, err
}

// put returns a connection whose last exchange ended cleanly to the pool,
// or closes it when the upstream is already closed.
func (u *upstream) put(p *poolOps, handle any) {
	u.busy.Add(-1)
	if u.closed.Load() {
		p.discard(handle)
		return
	}
	p.release(handle)
}

// What detachTunnel did with a tunnel's connection.
const (
	tunnelDetached = iota // out of the pool, counted in tunnels
	tunnelsFull           // MaxTunnelsPerBackend tunnels already: still the pool's
	tunnelInPool          // cannot be detached (not a BackendConn): still the pool's
)

// detachTunnel takes the connection of a request the backend upgraded out
// of the pool, which stops counting it against MaxConnsPerBackend; the
// tunnel then owns it (closing it with closeTunnel).
func (u *upstream) detachTunnel(handle any, conn net.Conn) int {
	bc, ok := conn.(*sockio.BackendConn)
	if !ok {
		return tunnelInPool
	}
	if u.tunnels.Add(1) > int64(u.cfg.MaxTunnelsPerBackend) {
		u.tunnels.Add(-1)
		return tunnelsFull
	}
	bc.Detach()
	u.drop(&u.ops, handle) // the pool counts it no more; its Close does nothing
	return tunnelDetached
}

// closeTunnel closes a tunnel's detached connection.
func (u *upstream) closeTunnel(conn net.Conn) {
	_ = conn.(*sockio.BackendConn).CloseDetached()
	u.tunnels.Add(-1)
}

// drop closes a connection that cannot carry another request.
func (u *upstream) drop(p *poolOps, handle any) {
	u.busy.Add(-1)
	p.discard(handle)
}

// flushIdle closes every idle pooled connection: after one of them turned
// out stale, the others (as old or older) likely are too, and the retry
// must use a fresh connection.
func (u *upstream) flushIdle() {
	u.hc.CloseIdleConnections()
	if u.bulk != nil {
		u.bulk.hc.CloseIdleConnections()
	}
}

// Close implements supervisor.Upstream: the process is retired and drained,
// so its idle connections are closed and busy ones are closed when released.
func (u *upstream) Close() {
	u.closed.Store(true)
	u.flushIdle()
	u.Drain()
}

// NewUpstream makes the keep-alive pool for one backend process, with the
// server's configuration (Config.NewUpstream does the same without a
// Server).
func (s *Server) NewUpstream(p *supervisor.Process) supervisor.Upstream {
	return newUpstream(p.Addr(), &s.cfg)
}

// NewUpstream makes the keep-alive pool for one backend process with c's
// backend settings (defaults filled in): pass it as
// supervisor.Options.NewUpstream, before the Server exists. An invalid c is
// refused by New, before any process starts.
func (c Config) NewUpstream(p *supervisor.Process) supervisor.Upstream {
	d, _ := c.withDefaults()
	return newUpstream(p.Addr(), &d)
}
