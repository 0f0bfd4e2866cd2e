package fastpath

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// smallBodyBytes is the largest request body forwarded from memory: fasthttp
// reads a body this small completely before the handler runs (its
// MaxRequestBodySize is set to it), so it goes out with the head in one write
// and the request stays retryable. Larger and chunked bodies are streamed.
const smallBodyBytes = 8 << 10

// maxInterim bounds the 1xx responses accepted before the final one.
const maxInterim = 16

// maxDiscardBytes bounds the request body loopgate reads and drops to give
// its own early answer on a clean connection (see answer).
const maxDiscardBytes = 4 << 20

// pumpReportWait bounds how long a response head that arrives while the
// request body's last bytes are being written waits for the body pump to
// finish; past it the client connection closes after the response, which is
// safe but costs the client a new connection.
const pumpReportWait = 50 * time.Millisecond

// sameBackendRetries bounds how often a retry asks the supervisor again
// when it is handed the process that just failed; the pauses between asks
// grow from sameBackendPause (5+10+20+40 ms at most, only on this path).
const (
	sameBackendRetries = 5
	sameBackendPause   = 5 * time.Millisecond
)

var (
	errTooLarge   = errors.New("request body exceeds maxAllowedContentLength")
	errTruncated  = errors.New("backend closed the connection before the end of the response body")
	errInterim    = errors.New("too many 1xx responses")
	errBadSwitch  = errors.New("101 Switching Protocols without a WebSocket upgrade request")
	errNoUpstream = errors.New("backend has no upstream (supervisor.Options.NewUpstream not wired)")
	errBadChunk   = errors.New("malformed chunked response body")
	errBodyCut    = errors.New("request body not fully sent")
)

// clientError wraps a failure reading the request body from the client.
type clientError struct{ err error }

func (e clientError) Error() string { return "reading request body: " + e.err.Error() }
func (e clientError) Unwrap() error { return e.err }

type bodyKind uint8

const (
	bodyNone       bodyKind = iota
	bodyFixed               // Content-Length
	bodyChunked             // Transfer-Encoding: chunked
	bodyUntilClose          // delimited by the backend closing
)

// exchange is one request's forwarding state, pooled and reused. It is owned
// by the request's goroutine; the body pump goroutine touches only the fields
// documented as its own until it reports on pumpDone. The response body is
// written by fasthttp after the handler returns through WriteTo, and
// CloseWithError ends the exchange. An exchange must not be copied.
type exchange struct {
	s    *Server
	ctx  *fasthttp.RequestCtx
	rt   *route
	spec *configload.AppSpec
	ri   reqInfo
	head []byte // request head sent to the backend (plus a small body)
	body []byte // a request body of at most smallBodyBytes

	b      Backend
	up     *upstream
	handle any
	conn   net.Conn
	br     *bufio.Reader

	reqLen     int64 // client body: >= 0 Content-Length, -1 chunked, -2 none
	limit      int64 // maxAllowedContentLength: the largest body allowed, in bytes
	idempotent bool
	consumed   bool // the request body was read to its end

	// pump state: pumpBuf and bytesIn belong to the pump goroutine while
	// pumping is true.
	pumping  bool
	pumpDone chan error
	pumpErr  error
	pumpBuf  *[]byte
	bytesIn  int64
	bodySent atomic.Bool // the pump is writing, or wrote, the body's last byte; its report on pumpDone follows

	kind      bodyKind
	remaining int64 // bodyFixed: bytes left; bodyChunked: bytes left in chunk
	chunkErr  error // a chunk's trailing CRLF was bad
	bodyEnd   bool  // the backend's body ended cleanly
	backendOK bool  // the backend connection can carry another request

	// HTTP/2 front (h2.go) only: start is the request's arrival (its ctx
	// has no time of its own).
	start time.Time
	watch *streamWatch // closes the backend connection when the client resets the stream

	status   int
	bytesOut int64
	retried  bool
	aborted  bool
	upgraded bool
	pid      int
}

func (x *exchange) reset() {
	*x = exchange{
		s:        x.s,
		head:     x.head[:0],
		body:     x.body[:0],
		pumpDone: x.pumpDone,
	}
}

// serveHTTP is the fasthttp handler: every request goes through here.
func (s *Server) serveHTTP(ctx *fasthttp.RequestCtx) {
	s.inflight.Add(1)
	x := s.exchanges.Get().(*exchange)
	x.ctx = ctx
	if x.forward() {
		x.finish()
	}
}

// forward handles the request. It returns true when the answer is complete
// (error pages, bodyless responses) and false when fasthttp will stream the
// body through WriteTo/CloseWithError or a WebSocket tunnel took over.
func (x *exchange) forward() bool {
	ctx := x.ctx
	h := &ctx.Request.Header
	if err := scanRequestHeaders(h.RawHeaders(), &x.ri); err != nil {
		x.s.log.Debug().Err(err).Msg("request refused")
		return x.answer(fasthttp.StatusBadRequest, nil) // consumed is false: the connection closes
	}
	// Bodies up to smallBodyBytes were read whole by fasthttp, so nothing
	// of this request is left unread on the connection.
	x.reqLen = int64(h.ContentLength())
	x.consumed = x.reqLen == 0 || x.reqLen == -2 || (x.reqLen > 0 && x.reqLen <= smallBodyBytes)
	x.rt = x.s.router.match(h.RequestURI())
	if x.rt == nil {
		return x.answer(fasthttp.StatusNotFound, nil)
	}
	x.rt.inflight.Add(1) // until finish
	x.spec = x.rt.app.Spec()
	x.limit = x.spec.MaxAllowedContentLength
	if x.reqLen > x.limit {
		return x.answer(fasthttp.StatusRequestEntityTooLarge, nil)
	}
	if x.reqLen > 0 && x.reqLen <= smallBodyBytes {
		// Already read by fasthttp (see smallBodyBytes): keep it for retries.
		n := int(x.reqLen)
		x.body = grow(x.body[:0], n)[:n]
		if _, err := io.ReadFull(ctx.RequestBodyStream(), x.body); err != nil {
			return x.answerClientError(clientError{err})
		}
		x.bytesIn = x.reqLen
	}
	x.idempotent = h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()

	for attempt := 0; ; attempt++ {
		done, retry := x.try(attempt)
		if !retry {
			return done
		}
		x.retried = true
	}
}

// try makes one attempt at forwarding. retry is true when the request may
// be sent again: nothing reached a backend, or an idempotent request whose
// whole body is in memory got no byte of response.
func (x *exchange) try(attempt int) (done, retry bool) {
	ctx := x.ctx
	b, outcome := x.rt.app.Acquire(ctx)
	// A retry that is handed the process that just failed (the supervisor
	// has not yet seen it die or probed it) asks again: the next process in
	// rotation, or, with one process, the restarted one after a pause.
	for i := 0; attempt > 0 && outcome == supervisor.Ready && b.PID() == x.pid && i < sameBackendRetries; i++ {
		b.ReleaseUnused()
		if i > 0 {
			time.Sleep(sameBackendPause << (i - 1))
		}
		b, outcome = x.rt.app.Acquire(ctx)
	}
	switch outcome {
	case supervisor.Ready:
	case supervisor.StartFailed:
		if x.spec.DisableStartUpErrorPage {
			return x.answer(fasthttp.StatusBadGateway, nil), false
		}
		return x.answerPage(fasthttp.StatusBadGateway, x.rt.page502_5(x.spec)), false
	case supervisor.Offline:
		return x.answerPage(fasthttp.StatusServiceUnavailable, x.rt.app.OfflinePage()), false
	default:
		return x.answer(fasthttp.StatusServiceUnavailable, nil), false
	}
	x.b = b
	x.pid = b.PID()
	up, _ := b.Upstream().(*upstream)
	if up == nil {
		return x.fail(errNoUpstream), false
	}
	x.up = up
	x.rt.adopt(up)
	handle, conn, reused, err := up.get()
	if err != nil {
		if errors.Is(err, fasthttp.ErrNoFreeConns) {
			x.releaseUnused()
			x.s.log.Warn().Str("app", x.rt.name).Int("pid", x.pid).Msg("backend connection pool exhausted")
			return x.answer(fasthttp.StatusServiceUnavailable, nil), false
		}
		b.Unreachable()
		if attempt == 0 {
			x.releaseUnused()
			return false, true
		}
		return x.fail(fmt.Errorf("connecting to %s: %w", b.Addr(), err)), false
	}
	if reused && !(x.idempotent && x.reqLen <= 0 && x.reqLen != -1) && connStale(conn) {
		// This request could not be sent again once it reached the
		// backend, so do not risk a connection the backend has closed.
		up.drop(handle)
		up.flushIdle()
		if handle, conn, _, err = up.get(); err != nil {
			b.Unreachable()
			return x.fail(fmt.Errorf("connecting to %s: %w", b.Addr(), err)), false
		}
	}
	x.handle, x.conn = handle, conn
	x.backendOK = true
	if x.watch != nil {
		x.watch.attach(conn)
	}
	rt := x.spec.RequestTimeout

	// Head (and a small body) in one write.
	in := headInput{token: b.Token(), remote: ctx.RemoteAddr(), https: ctx.IsTLS(), contentLength: x.reqLen}
	if in.https && x.s.clientCAs {
		if tc, ok := ctx.Conn().(connStater); ok {
			if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
				in.clientCert = st.PeerCertificates[0].Raw
			}
		}
	}
	x.head = appendRequestHead(x.head[:0], &ctx.Request.Header, &x.ri, &in)
	x.head = append(x.head, x.body...)
	streamed := x.reqLen > smallBodyBytes || x.reqLen == -1
	// One deadline for the write and the response head that follows it.
	setDeadline(conn.SetDeadline, rt)
	if streamed {
		_, err = conn.Write(x.head)
	} else {
		err = writeAwait(conn, x.head)
	}
	if err != nil {
		x.dropConn()
		if attempt == 0 {
			// The backend had closed this connection (or never took it):
			// nothing of this request was processed.
			up.flushIdle()
			x.releaseUnused()
			return false, true
		}
		return x.fail(fmt.Errorf("sending request: %w", err)), false
	}
	if streamed {
		x.startPump()
	}

	// The response head, skipping 100 Continue and relaying 103.
	x.br = up.hc.AcquireReader(conn)
	rh := &ctx.Response.Header
	rh.EnableNormalizing()
	for interim := 0; ; interim++ {
		if interim > 0 {
			setDeadline(conn.SetReadDeadline, rt)
		}
		err = rh.Read(x.br)
		if err != nil && errors.Is(err, fasthttp.ErrBadTrailer) && hideTrailerAnnouncement(x.br) {
			// fasthttp refuses a head announcing a field that may not
			// be a trailer (Trailer: Set-Cookie). The announcement is
			// never forwarded, so it is renamed where it waits in the
			// buffer, and the head read again without it.
			err = rh.Read(x.br)
			rh.Del(hiddenTrailerName)
		}
		if err != nil {
			x.stopPump()
			x.dropConn()
			if x.pumpErr != nil && !errors.Is(x.pumpErr, errBodyCut) {
				var ce clientError
				if errors.Is(x.pumpErr, errTooLarge) {
					return x.answer(fasthttp.StatusRequestEntityTooLarge, nil), false
				}
				if errors.As(x.pumpErr, &ce) {
					return x.answerClientError(ce), false
				}
			}
			if err == io.EOF && attempt == 0 && x.idempotent && !streamed {
				// No byte of response (fasthttp reports any failure on the
				// first byte as EOF): a stale keep-alive connection the
				// backend closed without reading the request, or a backend
				// that died with it. An idempotent request may be sent
				// again (RFC 9110 §9.2.2), once.
				up.flushIdle()
				x.releaseUnused()
				return false, true
			}
			return x.fail(fmt.Errorf("reading response head: %w", err)), false
		}
		code := rh.StatusCode()
		if code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			break
		}
		if interim == maxInterim {
			x.stopPump()
			x.dropConn()
			return x.fail(errInterim), false
		}
		if code == fasthttp.StatusEarlyHints {
			if hr, ok := ctx.Conn().(hintRelay); ok {
				hr.relayEarlyHints(rh)
			} else {
				_ = ctx.EarlyHints() // a client that cannot take it fails on the final response
			}
		}
	}
	x.status = rh.StatusCode()
	if x.status == fasthttp.StatusSwitchingProtocols {
		if !x.ri.websocket {
			x.stopPump()
			x.dropConn()
			rh.Reset()
			return x.fail(errBadSwitch), false
		}
		return x.startTunnel(), false
	}
	if x.ri.websocket {
		x.backendOK = false // it was asked to upgrade; do not reuse it
	}
	if x.pumping {
		select {
		case x.pumpErr = <-x.pumpDone:
			x.pumping = false
		default:
			if x.bodySent.Load() {
				// The backend may have read the whole body and answered
				// before the pump's last write returned: wait the moment
				// that takes, or this client connection would be closed
				// for nothing. The wait is bounded because that write can
				// also be stuck on a backend that answered early and reads
				// no more.
				t := time.NewTimer(pumpReportWait)
				select {
				case x.pumpErr = <-x.pumpDone:
					x.pumping = false
				case <-t.C:
				}
				t.Stop()
			}
		}
		if x.pumping {
			// The backend answered before it had the whole body. The
			// body keeps flowing while the response does (full duplex);
			// what the client has not sent when the response ends is
			// never read, so this client connection cannot carry another
			// request.
			rh.SetConnectionClose()
		} else {
			x.consumed = x.pumpErr == nil
		}
	}
	backendClose := rh.ConnectionClose()
	filterResponseHead(rh, x.spec.ForwardResponseConnectionHeader)
	if !x.consumed {
		rh.SetConnectionClose()
	}
	x.backendOK = x.backendOK && !backendClose && x.pumpErr == nil
	setDeadline(ctx.Conn().SetWriteDeadline, x.s.cfg.SendTimeout)

	if h := &ctx.Request.Header; h.IsHead() || x.status == fasthttp.StatusNoContent || x.status == fasthttp.StatusNotModified {
		x.kind, x.bodyEnd = bodyNone, true
		return true, false
	}
	size := rh.ContentLength()
	switch {
	case size >= 0:
		x.kind, x.remaining = bodyFixed, int64(size)
		x.bodyEnd = size == 0
	case size == -1:
		x.kind = bodyChunked
	default:
		x.kind, size = bodyUntilClose, -1
		x.backendOK = false
	}
	if size < 0 && !ctx.Request.Header.IsHTTP11() {
		return x.startCloseDelimited(), false
	}
	ctx.Response.SetBodyStream(x, size)
	return false, false
}

// startCloseDelimited answers an HTTP/1.0 client whose response has no
// length up front. Such a client cannot take chunked framing (which fasthttp
// would use), so the head and body are written past fasthttp on the
// hijacked connection, and closing it ends the body.
func (x *exchange) startCloseDelimited() bool {
	rh := &x.ctx.Response.Header
	rh.Del(fasthttp.HeaderTransferEncoding)
	rh.SetContentLength(-2) // no framing header; Connection: close
	x.head = rh.AppendBytes(x.head[:0])
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(x.closeDelimited)
	return false
}

func (x *exchange) closeDelimited(client net.Conn) {
	defer x.finish()
	bw := bufio.NewWriterSize(client, 16<<10)
	_, err := bw.Write(x.head)
	if err == nil {
		_, err = x.WriteTo(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil || !x.bodyEnd {
		x.aborted = true
		x.backendOK = false
	}
}

var strHTTP11 = []byte("HTTP/1.1")

// connStater is a client connection that knows its TLS state: *tls.Conn,
// and the HTTP/2 stream's stand-in (h2Conn).
type connStater interface {
	ConnectionState() tls.ConnectionState
}

// filterResponseHead applies the response header rules (ancm-spec.md §2.6):
// the backend's status code and reason phrase stay; Date is loopgate's;
// Connection is dropped unless forwardResponseConnectionHeader=true;
// Keep-Alive and Proxy-Connection are hop-by-hop; the Trailer announcement
// is dropped (the trailers themselves follow the body, see addTrailer);
// a Server header appears only if the backend sent one; repeated headers
// (Set-Cookie and the others) all stay. Framing headers are set by fasthttp
// from the body the client gets.
func filterResponseHead(rh *fasthttp.ResponseHeader, forwardConnection bool) {
	rh.SetProtocol(strHTTP11)
	rh.Del(fasthttp.HeaderDate)
	rh.Del(fasthttp.HeaderKeepAlive)
	rh.Del("Proxy-Connection")
	rh.Del(fasthttp.HeaderTrailer)
	if !forwardConnection {
		rh.Del(fasthttp.HeaderConnection)
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

// SupportsBodyWriteTo tells fasthttp to use WriteTo, which flushes as
// backend data arrives and keeps the inactivity timeouts.
func (x *exchange) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the backend's response body to the client. w is fasthttp's
// buffered connection writer for a Content-Length body, or its chunk writer
// (which flushes every chunk) otherwise. Bytes are flushed whenever the
// backend has nothing more buffered, so a slow stream reaches the client as
// it is produced.
func (x *exchange) WriteTo(w io.Writer) (int64, error) {
	bw, _ := w.(*bufio.Writer)
	cc := x.ctx.Conn()
	var total int64
	for {
		p, err := x.nextBody()
		if len(p) > 0 {
			setDeadline(cc.SetWriteDeadline, x.s.cfg.SendTimeout)
			var n int
			var werr error
			gathered := false
			if bw != nil && bw.Buffered() > 0 && len(p) > bw.Available() {
				n, gathered, werr = writeGathered(bw, cc, p)
			}
			if !gathered {
				n, werr = w.Write(p)
			}
			x.consume(n)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, x.abortClient(err)
		}
		if bw != nil && x.br.Buffered() == 0 && bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				return total, err
			}
		}
	}
}

// Read implements io.Reader for completeness; fasthttp uses WriteTo.
func (x *exchange) Read(p []byte) (int, error) {
	b, err := x.nextBody()
	n := copy(p, b)
	x.consume(n)
	if err != nil && err != io.EOF {
		err = x.abortClient(err)
	}
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// nextBody returns the next bytes of the response body, buffered in the
// backend reader; consume must follow with how many were used. It returns
// io.EOF at the body's clean end.
func (x *exchange) nextBody() ([]byte, error) {
	if x.bodyEnd {
		return nil, io.EOF
	}
	switch x.kind {
	case bodyFixed:
		p, err := x.fill()
		if err == io.EOF {
			err = errTruncated
		}
		if int64(len(p)) > x.remaining {
			p = p[:x.remaining]
		}
		return p, err
	case bodyChunked:
		if x.chunkErr != nil {
			return nil, x.chunkErr
		}
		if x.remaining == 0 {
			n, err := x.readChunkSize()
			if err != nil {
				return nil, err
			}
			if n == 0 {
				if err := x.readTrailers(); err != nil {
					return nil, err
				}
				x.bodyEnd = true
				return nil, io.EOF
			}
			x.remaining = n
		}
		p, err := x.fill()
		if err == io.EOF {
			err = errTruncated
		}
		if int64(len(p)) > x.remaining {
			p = p[:x.remaining]
		}
		return p, err
	case bodyUntilClose:
		p, err := x.fill()
		if err == io.EOF && len(p) == 0 {
			x.bodyEnd = true
		}
		return p, err
	}
	return nil, io.EOF
}

// fill returns what the backend reader holds, reading more (under the
// requestTimeout inactivity deadline) when it holds nothing.
func (x *exchange) fill() ([]byte, error) {
	if x.br.Buffered() == 0 {
		setDeadline(x.conn.SetReadDeadline, x.spec.RequestTimeout)
		if _, err := x.br.Peek(1); err != nil {
			return nil, err
		}
	}
	return x.br.Peek(x.br.Buffered())
}

// consume discards n body bytes from the backend reader.
func (x *exchange) consume(n int) {
	if n == 0 {
		return
	}
	_, _ = x.br.Discard(n)
	x.bytesOut += int64(n)
	switch x.kind {
	case bodyFixed:
		x.remaining -= int64(n)
		x.bodyEnd = x.remaining == 0
	case bodyChunked:
		x.remaining -= int64(n)
		if x.remaining == 0 {
			x.chunkErr = x.readCRLF() // reported by the next nextBody
		}
	}
}

func (x *exchange) readLine() ([]byte, error) {
	setDeadline(x.conn.SetReadDeadline, x.spec.RequestTimeout)
	line, err := x.br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			return nil, errTruncated
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errBadChunk
	}
	return line[:len(line)-2], nil
}

func (x *exchange) readChunkSize() (int64, error) {
	line, err := x.readLine()
	if err != nil {
		return 0, err
	}
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == ' ' || c == '\t':
			// chunk extensions are ignored
			if digits == 0 {
				return 0, errBadChunk
			}
			return n, nil
		default:
			return 0, errBadChunk
		}
		if digits == 15 {
			return 0, errBadChunk
		}
		n = n<<4 | int64(d)
		digits++
	}
	if digits == 0 {
		return 0, errBadChunk
	}
	return n, nil
}

func (x *exchange) readCRLF() error {
	line, err := x.readLine()
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return errBadChunk
	}
	return nil
}

func (x *exchange) readTrailers() error {
	for {
		line, err := x.readLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		x.addTrailer(line)
	}
}

// addTrailer keeps a trailer field of the backend's chunked response in the
// response header's trailers: fasthttp writes them after the last chunk to
// an HTTP/1.1 client, and h2.go sends them as HTTP/2 trailers. Only fields
// that may be trailers pass: fasthttp refuses framing, routing,
// authentication, Content-* and the like (RFC 9110 §6.5.1), and a field the
// head already carries, a repeat (the first value is kept), Set-Cookie, a
// hop-by-hop field or a value with a control character is dropped. The
// backend's Trailer header is not forwarded in the head: a trailer it
// announced may never come, and clients read unannounced ones.
func (x *exchange) addTrailer(line []byte) {
	name, value, ok := splitHeader(line)
	if !ok || responseHopHeader(name) || equalFoldASCII(name, "set-cookie") || !validFieldValue(value) {
		return
	}
	rh := &x.ctx.Response.Header
	if rh.PeekBytes(name) != nil || rh.AddTrailerBytes(name) != nil {
		return
	}
	rh.AddBytesKV(name, value)
}

// hiddenTrailerName replaces the name "Trailer" (same length, a valid
// token no app sends) in a response head fasthttp refused for it.
const hiddenTrailerName = "!railer"

// hideTrailerAnnouncement renames the Trailer fields of the response head
// buffered at the front of br, and reports whether there was one. It runs
// only after fasthttp parsed that whole head and refused it, so the head
// is in the buffer, where Peek lets it be changed before it is read again.
func hideTrailerAnnouncement(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	hidden := false
	for {
		i := bytes.IndexByte(b, '\n')
		if i <= 1 { // no line, or the empty line that ends the head
			return hidden
		}
		if line := b[:i]; len(line) > len(hiddenTrailerName) && line[len(hiddenTrailerName)] == ':' &&
			equalFoldASCII(line[:len(hiddenTrailerName)], fasthttp.HeaderTrailer) {
			copy(line, hiddenTrailerName)
			hidden = true
		}
		b = b[i+1:]
	}
}

// validFieldValue reports a field value without control characters other
// than HTAB (RFC 9110 §5.5).
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// abortClient handles a backend failure after the response head was sent:
// the client connection is reset, never closed as if the body were complete
// (ancm-spec.md §2.7).
func (x *exchange) abortClient(err error) error {
	x.aborted = true
	x.backendOK = false
	resetConn(x.ctx.Conn())
	if x.watch != nil && x.watch.canceled() {
		x.s.log.Debug().Err(err).Str("app", x.rt.name).Int("pid", x.pid).Msg("client reset the stream")
		return err
	}
	x.s.log.Warn().Err(err).Str("app", x.rt.name).Int("pid", x.pid).Msg("response aborted")
	return err
}

// CloseWithError is called by fasthttp once the response was written (or
// failed); it ends the exchange.
func (x *exchange) CloseWithError(err error) error {
	if err != nil || !x.bodyEnd {
		x.aborted = true
		x.backendOK = false
	}
	x.finish()
	return nil
}

// startPump streams the request body to the backend in a goroutine, so the
// response can be read (and relayed) while the upload is still going.
func (x *exchange) startPump() {
	if x.pumpDone == nil {
		x.pumpDone = make(chan error, 1)
	}
	x.pumpBuf = bufPool.Get().(*[]byte)
	x.pumping = true
	go func() {
		err := x.pump()
		if err != nil {
			// The request cannot complete: the backend must see it cut
			// short, and the response read waiting on it must end.
			_ = x.conn.Close()
		}
		x.pumpDone <- err
	}()
}

func (x *exchange) pump() error {
	r := x.ctx.RequestBodyStream()
	cc := x.ctx.Conn()
	bw := x.up.hc.AcquireWriter(x.conn)
	defer x.up.hc.ReleaseWriter(bw)
	buf := *x.pumpBuf
	chunked := x.reqLen == -1
	var hex [20]byte
	for {
		setDeadline(cc.SetReadDeadline, x.s.cfg.BodyReadTimeout)
		n, rerr := r.Read(buf)
		if n > 0 {
			x.bytesIn += int64(n)
			if x.bytesIn > x.limit {
				return errTooLarge
			}
			setDeadline(x.conn.SetWriteDeadline, x.spec.RequestTimeout)
			if x.bytesIn == x.reqLen {
				// Before the write: the backend can answer as soon as
				// it has these bytes, before the write returns here.
				x.bodySent.Store(true)
			}
			if chunked {
				_, _ = bw.Write(strconv.AppendInt(hex[:0], int64(n), 16))
				_, _ = bw.WriteString("\r\n")
			}
			_, _ = bw.Write(buf[:n])
			if chunked {
				_, _ = bw.WriteString("\r\n")
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("%w: %w", errBodyCut, err)
			}
		}
		if rerr == io.EOF {
			if chunked {
				_, _ = bw.WriteString("0\r\n\r\n")
				x.bodySent.Store(true) // before the write, as above
				if err := bw.Flush(); err != nil {
					return fmt.Errorf("%w: %w", errBodyCut, err)
				}
			}
			return nil
		}
		if rerr != nil {
			return clientError{rerr}
		}
	}
}

// stopPump ends the body pump: at once if it finished, otherwise by closing
// the backend connection and interrupting the client read.
func (x *exchange) stopPump() {
	if !x.pumping {
		return
	}
	select {
	case x.pumpErr = <-x.pumpDone:
	default:
		_ = x.conn.Close()
		_ = x.ctx.Conn().SetReadDeadline(time.Now())
		x.pumpErr = <-x.pumpDone
		if x.pumpErr == nil {
			x.pumpErr = errBodyCut
		}
	}
	x.pumping = false
	x.consumed = x.pumpErr == nil
	if x.pumpErr != nil {
		x.backendOK = false
	}
}

// finish ends the exchange: the pump is stopped, the backend connection
// pooled or closed, the backend released, the observer told, and the
// exchange recycled.
func (x *exchange) finish() {
	x.stopPump()
	if x.pumpBuf != nil {
		bufPool.Put(x.pumpBuf)
	}
	if x.handle != nil {
		if x.backendOK && x.bodyEnd && x.consumed && x.br != nil && x.br.Buffered() == 0 {
			x.up.put(x.handle)
		} else {
			x.up.drop(x.handle)
		}
	}
	if x.br != nil {
		x.up.hc.ReleaseReader(x.br)
	}
	x.releaseBackend()
	s := x.s
	if s.cfg.Observer != nil {
		h := &x.ctx.Request.Header
		name := ""
		if x.rt != nil {
			name = x.rt.name
		}
		start := x.ctx.Time()
		if !x.start.IsZero() {
			start = x.start
		}
		s.cfg.Observer.ObserveRequest(RequestInfo{
			App:        name,
			Method:     classifyMethod(h.Method()),
			Status:     x.status,
			Duration:   time.Since(start),
			BytesIn:    x.bytesIn,
			BytesOut:   x.bytesOut,
			PID:        x.pid,
			Retried:    x.retried,
			Upgraded:   x.upgraded,
			Aborted:    x.aborted,
			RawMethod:  h.Method(),
			Target:     h.RequestURI(),
			RemoteAddr: x.ctx.RemoteAddr(),
		})
	}
	if x.rt != nil {
		x.rt.inflight.Add(-1)
	}
	x.reset()
	s.exchanges.Put(x)
	s.inflight.Add(-1)
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
		x.up.drop(x.handle)
		x.handle, x.conn = nil, nil
	}
	if x.br != nil {
		x.up.hc.ReleaseReader(x.br)
		x.br = nil
	}
}

// fail answers 502.3 for a backend that could not be reached or failed
// before the response head was complete.
func (x *exchange) fail(err error) bool {
	if x.watch != nil && x.watch.canceled() {
		// The client reset the stream, and its backend connection was
		// closed for it: not the backend's failure.
		x.aborted = true
		x.s.log.Debug().Err(err).Str("app", x.rt.name).Int("pid", x.pid).Msg("client reset the stream")
	} else {
		x.s.log.Warn().Err(err).Str("app", x.rt.name).Int("pid", x.pid).Msg("bad gateway")
	}
	x.stopPump()
	x.dropConn()
	x.releaseBackend()
	x.ctx.Response.Header.Reset()
	return x.answerPage(fasthttp.StatusBadGateway, page502_3)
}

// answerClientError answers 400 after the client failed while sending the
// body (ancm-spec.md §2.9).
func (x *exchange) answerClientError(err error) bool {
	x.s.log.Debug().Err(err).Msg("client failed while sending the request body")
	x.releaseBackend()
	x.consumed = false
	return x.answer(fasthttp.StatusBadRequest, nil)
}

// answerPage answers status with an HTML body.
func (x *exchange) answerPage(status int, body []byte) bool {
	x.answer(status, body)
	x.ctx.Response.Header.SetContentTypeBytes(strTextHTML)
	return true
}

var strTextHTML = []byte("text/html")

// answer answers status with body (nil for none) from loopgate itself. A
// request body that was not read to its end makes the client connection
// close after the answer, so its rest is never taken for a request. An
// answer given before any of a body of at most maxDiscardBytes was read
// (503 offline, 502.5, 404) reads and drops that body first: a client
// still sending it would otherwise meet a reset on the closed connection
// and lose the answer, and the connection stays usable.
func (x *exchange) answer(status int, body []byte) bool {
	x.releaseBackend()
	if !x.consumed && x.pumpBuf == nil && x.reqLen > 0 && x.reqLen <= maxDiscardBytes &&
		status != fasthttp.StatusRequestEntityTooLarge && status != fasthttp.StatusBadRequest {
		x.consumed = x.discardBody()
	}
	r := &x.ctx.Response
	r.Header.SetStatusCode(status)
	r.SetBodyRaw(body)
	if !x.consumed {
		r.Header.SetConnectionClose()
		lingerOnClose(x.ctx.Conn())
	}
	x.status = status
	x.bodyEnd = true
	setDeadline(x.ctx.Conn().SetWriteDeadline, x.s.cfg.SendTimeout)
	return true
}

// discardBody reads the rest of the request body and drops it, each read
// bounded by BodyReadTimeout; false when the client failed or stalled.
func (x *exchange) discardBody() bool {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	r := x.ctx.RequestBodyStream()
	cc := x.ctx.Conn()
	for {
		setDeadline(cc.SetReadDeadline, x.s.cfg.BodyReadTimeout)
		n, err := r.Read(*bp)
		x.bytesIn += int64(n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}
