// HTTP/2 plumbing: the TLS listener split by ALPN between fasthttp and the
// HTTP/2 server, and the stand-ins an HTTP/2 stream uses as a RequestCtx's
// connection and as the response body's writer.

package fastpath

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// listener routes the TLS connections of tl by the protocol their
// handshake chose: h2 to the HTTP/2 server, the others to the returned
// listener (for fasthttp).
func (f *h2Front) listener(tl net.Listener) net.Listener {
	h1 := &chanListener{addr: tl.Addr(), conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	h2 := &chanListener{addr: tl.Addr(), conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go f.acceptLoop(tl, h1, h2)
	go func() { _ = f.srv.Serve(h2) }()
	return h1
}

// shutdown sends GOAWAY to every HTTP/2 connection and waits until they
// have finished their streams and closed, or ctx ends.
func (f *h2Front) shutdown(ctx context.Context) error {
	return f.srv.Shutdown(ctx)
}

// acceptLoop accepts from the TLS listener until it fails or h1 (the
// listener fasthttp serves) is closed, which closes the TLS listener too.
func (f *h2Front) acceptLoop(tl net.Listener, h1, h2 *chanListener) {
	go func() {
		<-h1.done
		_ = tl.Close()
	}()
	for {
		c, err := tl.Accept()
		if err != nil {
			h1.fail(err)
			h2.fail(err)
			return
		}
		go f.handshake(c.(*tls.Conn), h1, h2)
	}
}

// handshake completes a TLS handshake in its own goroutine, bounded by
// HeaderReadTimeout, so a slow client cannot hold up the others, and hands
// the connection on by its ALPN protocol.
func (f *h2Front) handshake(tc *tls.Conn, h1, h2 *chanListener) {
	setDeadline(tc.SetDeadline, f.s.cfg.HeaderReadTimeout)
	if err := tc.Handshake(); err != nil {
		f.s.log.Debug().Err(err).Msg("TLS handshake failed")
		_ = tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		h2.give(tc)
	} else {
		h1.give(tc)
	}
}

// chanListener is a listener fed with connections accepted elsewhere.
type chanListener struct {
	addr      net.Addr
	conns     chan net.Conn
	errc      chan error
	done      chan struct{}
	closeOnce sync.Once
}

func (l *chanListener) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *chanListener) fail(err error) {
	select {
	case l.errc <- err:
	default:
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// h2Conn is the client "connection" of an HTTP/2 request's RequestCtx: the
// stream. Deadlines go to the stream (http.ResponseController), TLS state
// and addresses to the TLS connection. Writes are dropped: fasthttp writes
// to a handler's connection only for a 103 Early Hints, and the exchange
// sends those to relayEarlyHints instead. Used by one request's goroutines.
type h2Conn struct {
	tc *tls.Conn
	rc *http.ResponseController
	w  http.ResponseWriter
}

// hintRelay is a client connection that sends a 103 Early Hints itself
// rather than through fasthttp's EarlyHints (which writes HTTP/1.1 bytes).
type hintRelay interface {
	relayEarlyHints(rh *fasthttp.ResponseHeader)
}

// relayEarlyHints sends the app's 103 as an HTTP/2 informational response
// with its Link headers, what the HTTP/1.1 front relays too.
func (c *h2Conn) relayEarlyHints(rh *fasthttp.ResponseHeader) {
	links := rh.PeekAll(fasthttp.HeaderLink)
	if len(links) == 0 {
		return
	}
	h := c.w.Header()
	for _, l := range links {
		h.Add(fasthttp.HeaderLink, string(l))
	}
	c.w.WriteHeader(http.StatusEarlyHints)
	h.Del(fasthttp.HeaderLink) // sent; the final response has its own
}

func (c *h2Conn) Read([]byte) (int, error)             { return 0, net.ErrClosed }
func (c *h2Conn) Write(p []byte) (int, error)          { return len(p), nil }
func (c *h2Conn) Close() error                         { return nil }
func (c *h2Conn) LocalAddr() net.Addr                  { return c.tc.LocalAddr() }
func (c *h2Conn) RemoteAddr() net.Addr                 { return c.tc.RemoteAddr() }
func (c *h2Conn) Handshake() error                     { return nil }
func (c *h2Conn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }
func (c *h2Conn) SetReadDeadline(t time.Time) error    { return c.rc.SetReadDeadline(t) }
func (c *h2Conn) SetWriteDeadline(t time.Time) error   { return c.rc.SetWriteDeadline(t) }
func (c *h2Conn) SetDeadline(t time.Time) error {
	return errors.Join(c.rc.SetReadDeadline(t), c.rc.SetWriteDeadline(t))
}

// h2Writer sends every write of the response body to the client at once,
// so a streaming response reaches it as the app produces it; the library
// applies the client's flow control.
type h2Writer struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (h h2Writer) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	if err == nil {
		err = h.rc.Flush()
	}
	return n, err
}
