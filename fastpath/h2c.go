// HTTP/2 to the app (backendProtocol="h2c"): the pool of multiplexed h2c
// connections per backend process, and one request's attempt as a stream
// on it, with the request head the header rules of headers.go made.

package fastpath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/internal/sockio"
)

// HTTP/2 to the app.
//
// With backendProtocol="h2c" an attempt (forward.go's try) goes past its
// acquire to tryH2C instead of the HTTP/1.1 wire code: the request, from
// an HTTP/1.1 client or an HTTP/2 stream alike, is still the RequestCtx the
// fronts made, and its head is still written by appendRequestHead (the
// token, X-Forwarded-*, MS-ASPNETCORE-* and hop-by-hop rules exist once);
// that head is then read back into an http.Request and sent as a stream on
// one of the process's h2c connections. The response head fills
// ctx.Response.Header as an HTTP/1.1 head would, so respond, the error
// answers and both fronts are the same; only the body comes from the
// stream (h2cWriteTo) and the trailers from the stream's trailers.
//
// The client is net/http's own HTTP/2 client (http.Transport with only
// UnencryptedHTTP2 and http.ClientConn, Go 1.26), the implementation
// golang.org/x/net/http2 itself wraps from Go 1.27: loopgate owns the
// connections (h2cPool), so that retries stay the one decision of
// retryable (Transport.RoundTrip would retry refused streams on its own),
// and a drained process's idle connections end with a GOAWAY (h2cNetConn).
//
// What it keeps of the hosting rules and what HTTP/2 changes:
//   - requestTimeout is the stream's inactivity: no response head, no
//     response bytes and no request bytes taken for that long resets the
//     stream (RST_STREAM CANCEL to the app) and gives 502.3 or, once the
//     response started, a reset of the client's stream;
//   - a client that resets its stream (or drops its connection) has the
//     app's stream reset; an app that resets its stream has the client's
//     stream reset (net/http's server sends INTERNAL_ERROR: a handler
//     cannot choose the code);
//   - "te: trailers" is sent to the app, as nginx's grpc_pass does:
//     loopgate takes trailers on this hop and relays them;
//   - a WebSocket upgrade cannot travel on HTTP/2: Upgrade is dropped and
//     the app sees a plain GET (RFC 9110 §7.8 lets a server ignore it);
//   - 103 Early Hints from the app are not relayed.

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
}

// h2cClient is one connection of the pool.
type h2cClient struct {
	cc  *http.ClientConn
	raw *h2cNetConn
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
// streams or more (or cannot take one) and the pool is not full.
func (p *h2cPool) get(ctx context.Context) (*http.ClientConn, error) {
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
			// Every connection is at the app's stream limit: wait on
			// the least busy for a slot (RoundTrip does).
			least := p.conns[0]
			for _, c := range p.conns[1:] {
				if c.cc.InFlight() < least.cc.InFlight() {
					least = c
				}
			}
			p.mu.Unlock()
			return least.cc, nil
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
	}
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
	ended   bool
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

// tryH2C makes one attempt over h2c, after acquire: it returns as try does.
func (x *exchange) tryH2C() (done bool, st stage, err error) {
	ctx := x.ctx
	x.ri.websocket = false // see the notes at the top of this file
	in := headInput{token: x.b.Token(), remote: ctx.RemoteAddr(), https: ctx.IsTLS(), forwardedFor: x.spec.ForwardedForFormat}
	if in.https && x.s.clientCAs {
		if tc, ok := ctx.Conn().(connStater); ok {
			if cs := tc.ConnectionState(); len(cs.VerifiedChains) > 0 {
				in.clientCert = cs.PeerCertificates[0].Raw
			}
		}
	}
	x.head = appendRequestHead(x.head[:0], &ctx.Request.Header, &x.ri, &in)

	s := &h2cStream{d: x.spec.RequestTimeout}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	x.h2s = s
	req, err := h2cRequest(s.ctx, x.head, x.up.hc.Addr)
	if err != nil {
		x.endH2C()
		return x.answer(fasthttp.StatusBadRequest, nil), stageNone, nil
	}
	switch {
	case x.emptyBody():
		req.Body, req.ContentLength = http.NoBody, 0
	case x.streamedBody():
		s.body = &h2cBody{src: ctx.RequestBodyStream(), client: ctx.Conn(), timeout: x.s.cfg.BodyReadTimeout, limit: x.limit,
			touch: s.touch}
		if x.reqBody == reqBodyChunked {
			s.body.cut = x.bodyCut
		}
	default:
		s.body = &h2cBody{src: bytes.NewReader(x.body), limit: x.limit, touch: s.touch}
	}
	if s.body != nil && x.stream != nil && x.streamedBody() {
		x.h2cTrailers(req, s.body)
	}
	if tc := tracked(ctx.Conn()); tc != nil && x.streamedBody() && x.stream == nil {
		s.client, s.slack = tc.Conn, finSlack+int64(x.s.cfg.MaxHeaderBytes)
		if x.reqBody == reqBodySized {
			s.sized = x.reqLen
		}
	}
	s.start()
	if s.body != nil {
		s.body.idle.L = &s.body.mu
		req.Body = s.body
		req.ContentLength = -1
		if x.reqBody == reqBodySized {
			req.ContentLength = x.reqLen
		}
	}

	cc, err := x.up.h2c().get(s.ctx)
	if err != nil {
		x.endH2C()
		if errors.Is(err, errPoolClosed) {
			return false, stageSend, err
		}
		x.b.Unreachable()
		return false, stageConnect, fmt.Errorf("connecting to %s: %w", x.b.Addr(), err)
	}
	if x.stream != nil {
		x.stream.attach(s)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		sent := int64(0)
		var berr error
		if s.body != nil {
			s.body.stop()
			sent, _, berr = s.body.state()
		}
		timedOut := s.timeout.Load()
		x.endH2C()
		var ce clientError
		switch {
		case errors.Is(berr, errTooLarge):
			return x.answer(fasthttp.StatusRequestEntityTooLarge, nil), stageNone, nil
		case errors.As(berr, &ce):
			return x.answerClientError(ce), stageNone, nil
		case timedOut:
			return false, stageBadResponse, errH2CTimeout
		case h2cUnprocessed(err) && (sent == 0 || !x.streamedBody()):
			return false, stageSend, fmt.Errorf("sending request: %w", err)
		}
		return false, stageNoResponse, fmt.Errorf("reading response head: %w", err)
	}
	s.resp = resp
	s.touch()
	rh := &ctx.Response.Header
	rh.SetStatusCode(resp.StatusCode)
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
	rh.SetContentLength(int(resp.ContentLength))
	if resp.ContentLength < 0 {
		rh.SetContentLength(-1)
	}
	if s.body != nil {
		// As awaitPump: a body still flowing keeps the HTTP/1.1 client's
		// connection from another request.
		_, finished, berr := s.body.state()
		x.consumed = finished && berr == nil
	}
	return x.respond(), stageNone, nil
}

// h2cTrailers passes an HTTP/2 client's request trailers on to the app:
// the names it announced are announced to the app, and the values follow
// the body. Names the header rules drop (MS-ASPNETCORE-*, X-Forwarded-*,
// hop-by-hop, framing) are dropped here too.
func (x *exchange) h2cTrailers(req *http.Request, body *h2cBody) {
	tr := x.stream.trailer()
	if len(tr) == 0 {
		return
	}
	req.Trailer = make(http.Header, len(tr))
	for k := range tr {
		if !dropRequestHeader([]byte(k), nil, &x.ri) {
			req.Trailer[k] = nil
		}
	}
	// Read by the HTTP/2 client's writer goroutine, which is the one that
	// reads the body and so runs atEOF.
	body.atEOF = func() {
		for k := range req.Trailer {
			req.Trailer[k] = tr[k]
		}
	}
}

// endH2C ends the attempt's stream.
func (x *exchange) endH2C() {
	if s := x.h2s; s != nil {
		s.end()
		if s.body != nil && x.streamedBody() {
			x.bytesIn, _, _ = s.body.state()
		}
	}
}

// h2cUnprocessed reports a stream the app never processed, which may be
// sent again (RFC 9113 §8.7): refused (REFUSED_STREAM), above a GOAWAY's
// last stream, or on a connection that closed before it was sent. net/http
// does not export these errors; their texts are stable since Go 1.6.
func h2cUnprocessed(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "REFUSED_STREAM") || strings.Contains(msg, "graceful shutdown GOAWAY") ||
		strings.Contains(msg, "client conn not usable") || strings.Contains(msg, "client conn is closed")
}

// h2cRequest reads the request head appendRequestHead wrote back into an
// http.Request for the app: the target byte for byte as :path, Host as
// :authority, every other field as written, and "te: trailers".
func h2cRequest(ctx context.Context, head []byte, addr string) (*http.Request, error) {
	// One string for the whole head: names and values are slices of it,
	// and the values share one backing array.
	hs := string(head)
	line, rest, ok := strings.Cut(hs, "\r\n")
	if !ok {
		return nil, errMalformedHdr
	}
	sp := strings.IndexByte(line, ' ')
	end := strings.LastIndexByte(line, ' ')
	if sp <= 0 || end <= sp {
		return nil, errMalformedHdr
	}
	method, target := line[:sp], line[sp+1:end]
	u := &url.URL{Scheme: "http", Host: addr}
	if len(target) > 0 && target[0] != '/' && target != "*" {
		// absolute-form: the app gets the origin-form
		if i := strings.Index(target, "://"); i >= 0 {
			target = target[i+3:]
			if j := strings.IndexAny(target, "/?"); j >= 0 {
				target = target[j:]
			} else {
				target = "/"
			}
			if target[0] == '?' {
				target = "/" + target
			}
		}
	}
	path, query, _ := strings.Cut(target, "?")
	u.RawQuery = query
	if strings.HasPrefix(path, "//") {
		// URL.RequestURI would read an Opaque "//x" as a scheme-relative
		// URL: give the path as Path and RawPath instead.
		if p, err := url.PathUnescape(path); err == nil {
			u.Path, u.RawPath = p, path
		} else {
			return nil, err
		}
	} else {
		u.Opaque = path
	}
	if strings.HasSuffix(target, "?") && query == "" {
		u.ForceQuery = true
	}
	n := strings.Count(rest, "\r\n")
	h := make(http.Header, n+1)
	vals := make([]string, 0, n+1)
	req := &http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: h}
	for {
		line, rest, ok = strings.Cut(rest, "\r\n")
		if !ok || line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			continue
		}
		value = strings.Trim(value, " \t")
		if strings.EqualFold(name, "host") {
			req.Host = value
			continue
		}
		if vs, dup := h[name]; dup {
			h[name] = append(vs, value)
			continue
		}
		vals = append(vals, value)
		h[name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	vals = append(vals, "trailers")
	h["Te"] = vals[len(vals)-1 : len(vals) : len(vals)]
	return req.WithContext(ctx), nil
}

// h2cWriteTo is WriteTo for a response from an h2c stream: the body as it
// arrives, then its trailers kept for the client (addTrailerField).
func (x *exchange) h2cWriteTo(w io.Writer) (int64, error) {
	s := x.h2s
	cc := x.ctx.Conn()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := s.resp.Body.Read(buf)
		if n > 0 {
			s.touch()
			setDeadline(cc.SetWriteDeadline, x.s.cfg.SendTimeout)
			m, werr := w.Write(buf[:n])
			total += int64(m)
			x.bytesOut += int64(m)
			if werr != nil {
				return total, werr
			}
			if f, ok := w.(interface{ Flush() error }); ok {
				if err := f.Flush(); err != nil {
					return total, err
				}
			}
		}
		if err == io.EOF {
			for k, vs := range s.resp.Trailer {
				for _, v := range vs {
					x.addTrailerField([]byte(k), []byte(v))
				}
			}
			x.bodyEnd = true
			return total, nil
		}
		if err != nil {
			if s.timeout.Load() {
				err = errH2CTimeout
			}
			return total, x.abortClient(err)
		}
	}
}

// grpcStatus answers a gRPC client (Content-Type application/grpc...) the
// way Envoy's and grpc-web proxies' local replies do: HTTP 200 with the
// status in grpc-status and grpc-message and no body (a Trailers-Only
// response), the code mapped from the HTTP status as gRPC's
// http-grpc-status-mapping says (400 INTERNAL, 401 UNAUTHENTICATED, 403
// PERMISSION_DENIED, 404 UNIMPLEMENTED, 429, 502, 503 and 504 UNAVAILABLE,
// others UNKNOWN). The access log keeps the HTTP status it stands for.
func grpcStatus(r *fasthttp.Response, status int, msg string) {
	code := 2 // UNKNOWN
	switch status {
	case fasthttp.StatusBadRequest:
		code = 13 // INTERNAL
	case fasthttp.StatusUnauthorized:
		code = 16
	case fasthttp.StatusForbidden:
		code = 7
	case fasthttp.StatusNotFound:
		code = 12 // UNIMPLEMENTED
	case fasthttp.StatusTooManyRequests, fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable, fasthttp.StatusGatewayTimeout:
		code = 14 // UNAVAILABLE
	}
	r.Header.SetStatusCode(fasthttp.StatusOK)
	r.SetBodyRaw(nil)
	r.Header.SetContentType("application/grpc")
	r.Header.Set("grpc-status", strconv.Itoa(code))
	r.Header.Set("grpc-message", grpcPercentEncode("loopgate: "+msg))
}

// grpcPercentEncode encodes a grpc-message: bytes outside printable ASCII,
// and '%', as %XX (gRPC over HTTP/2, "Responses").
func grpcPercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// gatewayWhy are the gRPC messages of the 502.3 answers, by cause.
var gatewayWhy = func() (w [len(gatewayTexts)]string) {
	for g, text := range gatewayTexts {
		w[g] = strings.TrimSpace("502.3 Bad Gateway: " + text)
	}
	w[gatewayTimeout] = "502.3 Bad Gateway: requestTimeout expired"
	return w
}()

// isGRPC reports a request whose client speaks gRPC (or gRPC-Web).
func isGRPC(h *fasthttp.RequestHeader) bool {
	return bytes.HasPrefix(h.ContentType(), strGRPC)
}

var strGRPC = []byte("application/grpc")
