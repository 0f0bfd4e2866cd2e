// One h2c attempt's stream (h2cStream): its inactivity timer and the
// check on a client that left, the request body as the HTTP/2 client
// reads it (h2cBody), and the app's interim responses (h2cInterim).

package fastpath

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopgate/loopgate/internal/sockio"
)

// h2cStream is one attempt's stream to the app. Its fields are set before
// the stream starts, except those documented otherwise.
type h2cStream struct {
	ctx     context.Context
	cancel  context.CancelFunc
	timer   *time.Timer // requestTimeout as inactivity, and the look at client; nil without either (fire)
	d       time.Duration
	last    atomic.Int64 // unix ns of the last activity (touch)
	timeout atomic.Bool  // requestTimeout expired
	done    atomic.Bool  // end was called: the timer stops
	client  net.Conn     // an HTTP/1.1 client's TCP connection, looked at while the app takes no body (clientGone); nil otherwise
	sized   int64        // the client's Content-Length; 0 for chunked
	slack   int64        // bytes that may be held unread above the client's socket (see finSlack)
	body    *h2cBody     // nil without a request body
	resp    *http.Response
	pool    *h2cPool // whose streams count this one, once it has a stream
	ended   bool
}

// h2cInterim is the stream's Got1xxResponse: an interim response from the
// app, as readHead takes one from an HTTP/1.1 app: a 103 Early Hints goes
// to the client with its Link headers (an HTTP/1.1 client's as fasthttp
// writes it, an HTTP/2 client's through its stream, hintRelay), any
// other 1xx is dropped. It runs on the HTTP/2 client's read goroutine,
// which the exchange's RoundTrip waits on, so it has the client's
// connection to itself; the write is bounded by SendTimeout, since that
// goroutine reads the app's connection for every stream on it.
func (x *exchange) h2cInterim(code int, h textproto.MIMEHeader) error {
	links := h["Link"]
	if code != http.StatusEarlyHints || len(links) == 0 {
		return nil
	}
	x.h2s.touch()
	rh := &x.ctx.Response.Header
	for _, l := range links {
		rh.Add("Link", l)
	}
	cc := x.ctx.Conn()
	setDeadline(cc.SetWriteDeadline, x.s.cfg.SendTimeout)
	if hr, ok := cc.(hintRelay); ok {
		hr.relayEarlyHints(rh)
	} else {
		_ = x.ctx.EarlyHints() // a client that cannot take it fails on the final response
	}
	rh.Del("Link") // the final response has its own
	return nil
}

// touch records activity: the inactivity timer counts from it.
func (s *h2cStream) touch() { s.last.Store(time.Now().UnixNano()) }

// start arms the timer: requestTimeout after the last activity, and every
// clientCheckEvery while an HTTP/1.1 client's body is unfinished.
func (s *h2cStream) start() {
	s.touch()
	first := s.d
	if s.client != nil && (first == 0 || first > clientCheckEvery) {
		first = clientCheckEvery
	}
	if first > 0 {
		// Armed after s.timer is set: fire re-arms it.
		s.timer = time.AfterFunc(time.Duration(math.MaxInt64), s.fire)
		s.timer.Reset(first)
	}
}

// fire is the timer: the stream is canceled when requestTimeout passed
// without activity, or when the client left while the app took no body (the
// HTTP/2 client waits on the app's flow control then, and nothing reads the
// client: the pump's pumpConn does the same on HTTP/1.1).
func (s *h2cStream) fire() {
	if s.done.Load() {
		return
	}
	next := time.Duration(-1)
	if s.d > 0 {
		idle := time.Since(time.Unix(0, s.last.Load()))
		if idle >= s.d {
			s.timeout.Store(true)
			s.cancel()
			return
		}
		next = s.d - idle
	}
	if s.client != nil && s.body != nil {
		if gone, pending := s.clientGone(); gone {
			s.cancel()
			return
		} else if pending && (next < 0 || next > clientCheckEvery) {
			next = clientCheckEvery
		}
	}
	if next > 0 {
		s.timer.Reset(next)
	}
}

// clientGone reports a client that reset its connection, or sent FIN
// before enough bytes to complete its Content-Length body, while nothing
// reads it (as exchange.clientGone); the body then fails with
// errClientGone. pending is false once the body ended or failed.
func (s *h2cStream) clientGone() (gone, pending bool) {
	b := s.body
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished || b.err != nil || b.stopped {
		return false, false
	}
	if b.reading {
		return false, true // the body's read meets the client's end itself
	}
	st := sockio.PeerEnded(s.client)
	if st.Reset || (st.Finished && s.sized > 0 && b.n+int64(st.Queued)+s.slack < s.sized) {
		b.err = clientError{errClientGone}
		return true, false
	}
	return false, true
}

// Close resets the stream: the client reset its own (streamWatch).
func (s *h2cStream) Close() error {
	s.cancel()
	return nil
}

// end ends the stream (RST_STREAM CANCEL to the app unless it had ended)
// and waits until the request body is no longer read.
func (s *h2cStream) end() {
	if s.ended {
		return
	}
	s.ended = true
	s.done.Store(true)
	if s.pool != nil {
		s.pool.streams.Add(-1)
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel()
	if s.resp != nil {
		_ = s.resp.Body.Close()
	}
	if s.body != nil {
		s.body.stop()
	}
}

// h2cBody is the request body as the HTTP/2 client reads it: from the
// client (a streamed body, with BodyReadTimeout per read, counted against
// maxAllowedContentLength) or from memory (a small body). The client reads
// it in its own goroutine, possibly after the response ended; stop makes
// sure it is not read once the exchange is done with the RequestCtx.
type h2cBody struct {
	src      io.Reader
	client   net.Conn // deadlines; nil for a body in memory
	timeout  time.Duration
	limit    int64
	cut      func() bool // the client cut a chunked body (bodyCut)
	atEOF    func()      // called at the body's clean end, before it is reported
	touch    func()
	mu       sync.Mutex
	idle     sync.Cond
	reading  bool
	stopped  bool
	n        int64 // bytes read
	err      error // the first failure: errTooLarge, a clientError
	finished bool  // read to its end
}

func (b *h2cBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return 0, errBodyCut
	}
	if b.err != nil {
		b.mu.Unlock()
		return 0, b.err
	}
	b.reading = true
	b.mu.Unlock()
	if b.client != nil {
		setDeadline(b.client.SetReadDeadline, b.timeout)
	}
	n, err := b.src.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	b.idle.Broadcast()
	b.n += int64(n)
	if n > 0 {
		b.touch()
	}
	switch {
	case b.n > b.limit:
		b.err = errTooLarge
		return 0, b.err
	case err == io.EOF:
		if b.cut != nil && b.cut() {
			b.err = clientError{io.ErrUnexpectedEOF}
			return n, b.err
		}
		b.finished = true
		if b.atEOF != nil {
			b.atEOF()
		}
	case err != nil:
		b.err = clientError{err}
		return n, b.err
	}
	return n, err
}

func (b *h2cBody) Close() error { return nil }

// stop ends the reading: a read in progress is interrupted and waited for.
func (b *h2cBody) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	if b.reading && b.client != nil {
		_ = b.client.SetReadDeadline(time.Now())
	}
	for b.reading {
		b.idle.Wait()
	}
}

// state reports what was read and how the reading ended.
func (b *h2cBody) state() (n int64, finished bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n, b.finished, b.err
}
