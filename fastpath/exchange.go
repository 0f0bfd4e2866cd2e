// The exchange: one request's forwarding state, how it is pooled and
// reset, and how it ends (finish): the backend connection pooled or
// closed, the backend released, the observer told.

package fastpath

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
)

// reqBody is how the client frames its request body.
type reqBody uint8

const (
	reqBodyNone    reqBody = iota // no framing header: no body
	reqBodySized                  // Content-Length: reqLen bytes (0 included)
	reqBodyChunked                // Transfer-Encoding: chunked
)

// reqBodyOf classifies fasthttp's RequestHeader.ContentLength: a length
// >= 0, -1 for chunked, -2 for none.
func reqBodyOf(n int64) reqBody {
	switch {
	case n >= 0:
		return reqBodySized
	case n == -1:
		return reqBodyChunked
	}
	return reqBodyNone
}

// streamHooks is what the HTTP/2 front (h2.go) adds to an exchange; nil for
// an HTTP/1.1 request. Implemented by *streamWatch.
type streamHooks interface {
	// arrived is the request's arrival (an HTTP/2 request's RequestCtx
	// has no time of its own).
	arrived() time.Time
	// attach reports the backend connection (or h2c stream) an attempt
	// took, to be closed when the client resets the stream.
	attach(backend io.Closer)
	// canceled reports whether the client reset the stream.
	canceled() bool
	// trailer is the request's trailers: the names the client announced,
	// with their values once the body has ended (an h2c app gets them).
	trailer() http.Header
}

// noCopy makes go vet's copylocks check refuse a copy of the struct that
// holds it; it is never locked.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// exchange is one request's forwarding state, pooled and reused. It is owned
// by the request's goroutine; the body pump goroutine touches only the fields
// documented as its own until it reports on pumpDone. The response body is
// written by fasthttp after the handler returns through WriteTo, and
// CloseWithError ends the exchange. An exchange must not be copied, nor
// retained after finish.
type exchange struct {
	_      noCopy
	s      *Server
	ctx    *fasthttp.RequestCtx
	route  *route
	spec   *configload.AppSpec
	ri     reqInfo
	stream streamHooks  // HTTP/2 only; nil for HTTP/1.1
	h2s    *h2cStream   // the attempt's stream to an h2c app (h2c.go); nil otherwise
	head   []byte       // request head sent to the backend (plus a small body)
	fields fieldScratch // the response head's fields while filterResponseHead reorders none
	target []byte       // the request target routed and forwarded (requestline.go): the client's, or tbuf
	tbuf   []byte       // a target normalized by forwardedTarget
	body   []byte       // a request body of at most smallBodyBytes

	b      Backend
	up     *upstream
	pool   *poolOps // the pool of up that handle came from
	handle any
	conn   net.Conn
	br     *bufio.Reader

	reqBody    reqBody
	reqLen     int64 // reqBodySized: the declared Content-Length; 0 otherwise
	limit      int64 // maxAllowedContentLength: the largest body allowed, in bytes
	idempotent bool
	consumed   bool // the request body was read to its end

	// pump state (upload.go): pumpBuf and bytesIn belong to the pump
	// goroutine while pumping is true.
	pumping  bool
	pumpDone chan error
	pumpErr  error
	pumpBuf  *[]byte
	pw       pumpConn // the backend connection as the pump writes it
	bytesIn  int64
	bodySent atomic.Bool // the pump is writing, or wrote, the body's last byte; its report on pumpDone follows

	// response body state (relay.go)
	kind        bodyKind
	remaining   int64 // bodyFixed: bytes left; bodyChunked: bytes left in chunk
	chunkErr    error // a chunk's trailing CRLF was bad
	bodyEnd     bool  // the backend's body ended cleanly
	sendArmed   bool  // armSend set the client's send deadline; WriteTo has not written since
	sendTimed   bool  // armSend gave the client's writes the send timeout: nothing to renew
	releaseLate bool  // release the connection from the sockmap once bytesOut bypasses it (sockmap.go)
	backendOK   bool  // the backend connection can carry another request

	status   int
	bytesOut int64
	retried  bool
	aborted  bool
	upgraded bool
	detached bool      // the backend connection left the pool for a tunnel (upstream.detachTunnel)
	snap     *observed // what the observer needs of the request once ctx is gone (polled tunnels)
	pid      int
	why      string // what loopgate's own answer says to a gRPC client (answer)
}

// reset makes x a zero exchange that keeps its server, its buffers and
// its pump channel for the next request. (Zeroed in place and the kept
// fields put back: a composite literal with them would be built whole
// beside x and copied over it, three times the instructions.)
func (x *exchange) reset() {
	s, pumpDone := x.s, x.pumpDone
	head, tbuf, body, lines := x.head[:0], x.tbuf[:0], x.body[:0], x.ri.lines[:0]
	if cap(lines) > keptHeadLines {
		lines = nil
	}
	fields := fieldScratch{buf: x.fields.buf[:0], fields: x.fields.fields[:0]}
	*x = exchange{}
	x.s, x.pumpDone = s, pumpDone
	x.head, x.tbuf, x.body, x.ri.lines = head, tbuf, body, lines
	x.fields = fields
}

// keptHeadLines bounds the index of request header lines (reqInfo.lines)
// an exchange keeps for the next request: a head of many short lines (16
// KiB of "a:" lines is 4,000 of them) would otherwise leave its index, 24
// bytes a line, with the exchange for as long as it is pooled.
const keptHeadLines = 128

// emptyBody reports a request without a body to send.
func (x *exchange) emptyBody() bool {
	return x.reqBody == reqBodyNone || (x.reqBody == reqBodySized && x.reqLen == 0)
}

// streamedBody reports a request body that is streamed to the backend by
// the pump (upload.go) rather than sent from memory with the head: it cannot
// be sent again.
func (x *exchange) streamedBody() bool {
	return x.reqBody == reqBodyChunked || (x.reqBody == reqBodySized && x.reqLen > smallBodyBytes)
}

// finish ends the exchange: the pump is stopped, the backend connection
// pooled or closed, the backend released, the observer told, and the
// exchange recycled.
func (x *exchange) finish() {
	x.endH2C()
	x.stopPump()
	if x.pumpBuf != nil {
		bufPool.Put(x.pumpBuf)
	}
	if x.handle != nil {
		if x.backendOK && x.bodyEnd && x.consumed && x.br != nil && x.br.Buffered() == 0 && !x.uploadOffSockmap() {
			x.up.put(x.pool, x.handle)
		} else {
			x.up.drop(x.pool, x.handle)
		}
	}
	if x.br != nil {
		x.up.hc.ReleaseReader(x.br)
	}
	x.releaseBackend()
	s := x.s
	if s.cfg.Observer != nil {
		o := x.snap
		if o == nil {
			h := &x.ctx.Request.Header
			o = &observed{method: h.Method(), target: h.RequestURI(), start: x.ctx.Time(), remote: x.ctx.RemoteAddr()}
		}
		name := ""
		if x.route != nil {
			name = x.route.name
		}
		start := o.start
		if x.stream != nil {
			start = x.stream.arrived()
		}
		s.cfg.Observer.ObserveRequest(RequestInfo{
			App:        name,
			Method:     classifyMethod(o.method),
			Status:     x.status,
			Duration:   time.Since(start),
			BytesIn:    x.bytesIn,
			BytesOut:   x.bytesOut,
			PID:        x.pid,
			Retried:    x.retried,
			Upgraded:   x.upgraded,
			Aborted:    x.aborted,
			RawMethod:  o.method,
			Target:     o.target,
			RemoteAddr: o.remote,
		})
	}
	if x.route != nil {
		x.route.inflight.Add(-1)
	}
	x.reset()
	s.exchanges.Put(x)
	s.inflight.Add(-1)
}

// arrival is when the request arrived: fasthttp's reading of the clock as
// it took the request, or the HTTP/2 stream's (whose RequestCtx has none).
func (x *exchange) arrival() time.Time {
	if x.stream != nil {
		return x.stream.arrived()
	}
	return x.ctx.Time()
}

// observed is what the observer is told of a request, taken from its
// context.
type observed struct {
	method, target []byte
	start          time.Time
	remote         net.Addr
}

// snapshotForObserver copies what the observer needs of the request, for a
// tunnel that outlives its request context (fasthttp reuses the context
// once the hijack handler returns); ctx must not be used after.
func (x *exchange) snapshotForObserver() {
	h := &x.ctx.Request.Header
	x.snap = &observed{
		method: append([]byte(nil), h.Method()...),
		target: append([]byte(nil), h.RequestURI()...),
		start:  x.ctx.Time(),
		remote: x.ctx.RemoteAddr(),
	}
	x.ctx = nil
}

// shedBuffers lets go of the buffers a pooled exchange keeps for the next
// request (the request head, a normalized target, a small body, the
// response fields' scratch, and the Connection tokens, which point into
// fasthttp's request buffer) when the exchange is about to be held by an
// idle tunnel for as long as the tunnel lasts: a browser's upgrade head
// alone, cookies and all, is often a few KiB, against the 4.6 KiB an idle
// tunnel aims at (issue 19). The exchange grows them again when it serves
// a request after the tunnel.
func (x *exchange) shedBuffers() {
	x.head, x.tbuf, x.body, x.target = nil, nil, nil, nil
	x.fields = fieldScratch{}
	x.ri = reqInfo{}
}

// releaseBackend ends the request's use of its backend, counted as a
// request the backend served (or failed).
func (x *exchange) releaseBackend() {
	if x.b != nil {
		x.b.Release()
		x.b = nil
	}
}

// releaseUnused ends an attempt that the backend never answered and that
// is not counted against it: the request is retried, or loopgate answers.
func (x *exchange) releaseUnused() {
	if x.b != nil {
		x.b.ReleaseUnused()
		x.b = nil
	}
}

// dropConn closes the current backend connection after a failed attempt.
func (x *exchange) dropConn() {
	if x.handle != nil {
		x.up.drop(x.pool, x.handle)
		x.handle, x.conn = nil, nil
	}
	if x.br != nil {
		x.up.hc.ReleaseReader(x.br)
		x.br = nil
	}
}

// setDeadline sets an inactivity deadline d from now, or none for d == 0.
func setDeadline(set func(time.Time) error, d time.Duration) {
	if d > 0 {
		_ = set(time.Now().Add(d))
	} else {
		_ = set(time.Time{})
	}
}
