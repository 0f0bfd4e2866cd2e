// The h2c connections to one backend process (h2cPool): a few, each
// carrying many streams, opened as needed and closed with a GOAWAY when the
// process is drained.

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// h2cSpread is the number of streams on a connection past which the next
// request opens another connection (up to h2cMaxConns), so that one
// connection's writer and read loop do not serialise a busy backend.
const (
	h2cSpread   = 100
	h2cMaxConns = 4
)

var (
	errH2CTimeout = fmt.Errorf("no activity on the HTTP/2 stream for requestTimeout: %w", os.ErrDeadlineExceeded)
	errPoolClosed = errors.New("backend retired: its h2c connections are closed")
	// errStreamQueueFull: no stream is free and queueLength requests
	// of the app already wait for one.
	errStreamQueueFull = errors.New("no free stream to the app, and queueLength requests already wait")
	// errNoFreeStream: a request waited --backend-queue-timeout for a
	// stream in vain.
	errNoFreeStream = errors.New("no stream to the app came free within --backend-queue-timeout")
)

// h2cPool is the h2c connections to one backend process: a few, each
// carrying many streams. Safe for concurrent use; must not be copied.
type h2cPool struct {
	_     noCopy
	t     *http.Transport
	addr  string
	mu    sync.Mutex
	conns []*h2cClient
	dial  chan struct{} // closed when the dial in progress ends; nil when none
	done  bool
	// streams counts the requests holding a stream now, from get to the
	// stream's end (h2cStream.end): an h2c app's busy count, for metrics.
	streams atomic.Int64

	// changed is closed when a connection's state changes (a stream
	// ends, the app allows more, it closes) or the pool is drained: a
	// request waiting for a stream looks again. Made on demand, under
	// cmu, which the connections' state hooks take (never mu: they may
	// run inside Reserve, called under mu).
	cmu     sync.Mutex
	changed chan struct{}
}

// h2cWait is how a request waits for a stream when every connection of
// the pool is at the app's stream limit: as for an HTTP/1.1 connection
// under --backend-max-conns, it is counted against queueLength (enter,
// false when the queue is full; leave when the wait ends) and waits at
// most timeout (--backend-queue-timeout).
type h2cWait struct {
	enter   func() bool
	leave   func()
	timeout time.Duration
}

// h2cClient is one connection of the pool.
type h2cClient struct {
	cc *http.ClientConn
}

func newH2CPool(addr string, cfg *Config) *h2cPool {
	p := &h2cPool{addr: addr}
	d := net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: -1}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	p.t = &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			return &h2cNetConn{Conn: c}, nil
		},
		DisableCompression:     true, // bodies pass as the app encoded them
		IdleConnTimeout:        cfg.BackendIdleTimeout,
		MaxResponseHeaderBytes: int64(cfg.MaxResponseHeaderBytes),
		HTTP2: &http.HTTP2Config{
			// Buffered per stream when the client reads slower than the
			// app writes: flow control holds the app back past it.
			MaxReceiveBufferPerStream: 1 << 20,
		},
	}
	return p
}

// get returns a connection with a stream reserved for the caller's
// RoundTrip: the least busy one, or a new one when all carry h2cSpread
// streams or more (or cannot take one) and the pool is not full. When the
// pool is full and no connection can take a stream, the caller waits for
// one as w says: errStreamQueueFull at once, or errNoFreeStream after
// w.timeout.
func (p *h2cPool) get(ctx context.Context, w h2cWait) (*http.ClientConn, error) {
	var (
		changed <-chan struct{} // the change to wait for, taken before a last look
		queued  bool
		timer   *time.Timer
	)
	defer func() {
		if queued {
			w.leave()
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		if p.done {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		var best *h2cClient
		live := p.conns[:0]
		for _, c := range p.conns {
			if c.cc.Err() != nil {
				continue
			}
			live = append(live, c)
			if c.cc.Available() > 0 && (best == nil || c.cc.InFlight() < best.cc.InFlight()) {
				best = c
			}
		}
		clear(p.conns[len(live):])
		p.conns = live
		full := len(p.conns) >= h2cMaxConns
		if best != nil && (best.cc.InFlight() < h2cSpread || full || p.dial != nil) && best.cc.Reserve() == nil {
			p.mu.Unlock()
			return best.cc, nil
		}
		if full {
			p.mu.Unlock()
			if changed == nil {
				// Look once more after taking the change to wait
				// for, so that none is missed.
				changed = p.changes()
				continue
			}
			if !queued {
				if !w.enter() {
					return nil, errStreamQueueFull
				}
				queued, timer = true, time.NewTimer(w.timeout)
			}
			select {
			case <-changed:
				changed = nil
				continue
			case <-timer.C:
				return nil, errNoFreeStream
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if wait := p.dial; wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		p.dial = make(chan struct{})
		p.mu.Unlock()
		cc, err := p.t.NewClientConn(ctx, "http", p.addr)
		p.mu.Lock()
		close(p.dial)
		p.dial = nil
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		if p.done {
			p.mu.Unlock()
			_ = cc.Close()
			return nil, errPoolClosed
		}
		p.conns = append(p.conns, &h2cClient{cc: cc})
		p.mu.Unlock()
		cc.SetStateHook(func(*http.ClientConn) { p.notify() })
	}
}

// changes returns a channel closed at the pool's next state change.
func (p *h2cPool) changes() <-chan struct{} {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	if p.changed == nil {
		p.changed = make(chan struct{})
	}
	return p.changed
}

// notify wakes the requests waiting for a stream.
func (p *h2cPool) notify() {
	p.cmu.Lock()
	if p.changed != nil {
		close(p.changed)
		p.changed = nil
	}
	p.cmu.Unlock()
}

// drain ends the pool's use: no new stream starts on it, and every
// connection closes, with a GOAWAY, once its streams are done. The
// supervisor drains a process's upstream before the shutdown request.
func (p *h2cPool) drain() {
	p.mu.Lock()
	p.done = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.notify() // a request waiting for a stream goes elsewhere
	for _, c := range conns {
		go closeWhenIdle(c.cc)
	}
}

// closeWhenIdle closes cc with a GOAWAY once no stream is in flight on it
// (checked as its state changes), or when the app closes it.
func closeWhenIdle(cc *http.ClientConn) {
	idle := make(chan struct{}, 1)
	cc.SetStateHook(func(cc *http.ClientConn) {
		if cc.InFlight() == 0 || cc.Err() != nil {
			select {
			case idle <- struct{}{}:
			default:
			}
		}
	})
	if cc.InFlight() > 0 && cc.Err() == nil {
		<-idle
	}
	cc.SetStateHook(nil)
	_ = cc.Close()
}

// h2cNetConn is an h2c connection's socket. Its Close sends a GOAWAY
// (NO_ERROR, last stream 0) first: net/http's client closes a connection
// without one, which an app can take for a failure. The client writes
// whole frames under its own lock; the writes here are serialised with
// them, and Close comes after the client's last write.
type h2cNetConn struct {
	net.Conn
	mu     sync.Mutex
	closed bool
}

// goAway is a GOAWAY frame: length 8, type 7, no flags, stream 0, last
// stream 0, NO_ERROR.
var goAway = [17]byte{0, 0, 8, 7}

func (c *h2cNetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *h2cNetConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		_ = c.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Conn.Write(goAway[:])
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// h2c returns the upstream's h2c pool, made on first use.
func (u *upstream) h2c() *h2cPool {
	if p := u.h2.Load(); p != nil {
		return p
	}
	u.h2.CompareAndSwap(nil, newH2CPool(u.hc.Addr, u.cfg))
	return u.h2.Load()
}

// Drain implements supervisor.Drainer: the process is retired and has no
// request left; its h2c connections close with a GOAWAY before the
// shutdown request. HTTP/1.1 connections are left to Close.
func (u *upstream) Drain() {
	if p := u.h2.Load(); p != nil {
		p.drain()
	}
}
