// Forwarding: the attempt loop. A request is routed and checked (forward),
// then tried: a backend acquired, a connection taken, the request sent and
// the response head read, each step saying which stage failed; retryable
// (retry.go) decides whether a failed attempt is made again.

package fastpath

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/sockio"
	"github.com/loopgate/loopgate/supervisor"
)

// smallBodyBytes is the largest request body forwarded from memory: fasthttp
// reads a body this small completely before the handler runs (its
// MaxRequestBodySize is set to it), so it goes out with the head in one write
// and the request stays retryable. Larger and chunked bodies are streamed.
const smallBodyBytes = 8 << 10

// maxInterim bounds the 1xx responses accepted before the final one.
const maxInterim = 16

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

// staleCheckIdle is how long a pooled connection must have been idle for an
// idempotent bodiless request to peek at it before use (sockio.Stale); a
// busier connection goes out without the extra system call, and a stale
// one costs a retry (retryable) instead.
const staleCheckIdle = time.Second

// serveHTTP is the fasthttp handler: every request goes through here.
func (s *Server) serveHTTP(ctx *fasthttp.RequestCtx) {
	headRead(ctx.Conn())
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
	// consumed is still false: the connection closes after a refusal.
	if status := refuseVersion(h); status != 0 {
		x.s.log.Debug().Bytes("protocol", h.Protocol()).Msg("request refused: HTTP version")
		return x.answer(status, nil)
	}
	if err := scanRequestHeaders(h.RawHeaders(), &x.ri); err != nil {
		x.s.log.Debug().Err(err).Msg("request refused")
		return x.answer(fasthttp.StatusBadRequest, nil)
	}
	if status := asHTTP11(h); status != 0 {
		x.s.log.Debug().Msg("request refused: no Host")
		return x.answer(status, nil)
	}
	n := int64(h.ContentLength())
	if x.reqBody = reqBodyOf(n); x.reqBody == reqBodySized {
		x.reqLen = n
	}
	// Bodies up to smallBodyBytes were read whole by fasthttp, so nothing
	// of this request is left unread on the connection.
	x.consumed = !x.streamedBody()
	var err error
	if x.target, x.tbuf, err = forwardedTarget(x.tbuf, h.RequestURI()); err != nil {
		x.s.log.Debug().Err(err).Msg("request refused")
		x.consumed = false
		return x.answer(fasthttp.StatusBadRequest, nil)
	}
	x.route = x.s.router.match(x.target)
	if x.route == nil {
		return x.answer(fasthttp.StatusNotFound, nil)
	}
	x.route.inflight.Add(1) // until finish
	x.spec = x.route.app.Spec()
	x.limit = x.spec.MaxAllowedContentLength
	if x.reqBody == reqBodySized && x.reqLen > x.limit {
		return x.answer(fasthttp.StatusRequestEntityTooLarge, nil)
	}
	if x.reqBody == reqBodySized && x.reqLen > 0 && x.reqLen <= smallBodyBytes {
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
		done, st, err := x.try(attempt)
		if st == stageNone {
			return done
		}
		f := retryFacts{attempt: attempt, idempotent: x.idempotent, streamed: x.streamedBody()}
		if st == stageNoResponse && f.attempt == 0 && f.idempotent && !f.streamed {
			f.exit = x.backendExit() // only where it can change the answer
		}
		if !retryable(st, f) {
			return x.fail(st, err)
		}
		if st != stageConnect {
			// The connection turned out closed: the pooled ones as old or
			// older likely are too.
			x.up.flushIdle()
		}
		x.releaseUnused()
		x.retried = true
	}
}

// try makes one attempt at forwarding. It returns done as forward does, or
// the stage that failed with its error, for forward to retry or fail.
func (x *exchange) try(attempt int) (done bool, st stage, err error) {
	if answered := x.acquire(attempt); answered {
		return true, stageNone, nil
	}
	if x.spec.BackendProtocol == configload.BackendH2C {
		return x.tryH2C()
	}
	if answered, st, err := x.connect(); answered || st != stageNone {
		return answered, st, err
	}
	if st, err := x.send(); st != stageNone {
		return false, st, err
	}
	if answered, st, err := x.readHead(); answered || st != stageNone {
		return answered, st, err
	}
	return x.respond(), stageNone, nil
}

// acquire asks the app for a ready backend; true when loopgate answered
// instead (502.5, 503), or when the backend has no upstream (502.3).
func (x *exchange) acquire(attempt int) (answered bool) {
	ctx := x.ctx
	b, outcome := x.route.app.Acquire(ctx)
	// A retry that is handed the process that just failed (the supervisor
	// has not yet seen it die or probed it) asks again: the next process in
	// rotation, or, with one process, the restarted one after a pause.
	for i := 0; attempt > 0 && outcome == supervisor.Ready && b.PID() == x.pid && i < sameBackendRetries; i++ {
		b.ReleaseUnused()
		if i > 0 {
			time.Sleep(sameBackendPause << (i - 1))
		}
		b, outcome = x.route.app.Acquire(ctx)
	}
	switch outcome {
	case supervisor.Ready:
	case supervisor.StartFailed:
		x.why = "502.5 ANCM Out-Of-Process Startup Failure: the application did not start"
		if x.spec.DisableStartUpErrorPage {
			return x.answer(fasthttp.StatusBadGateway, nil)
		}
		return x.answerPage(fasthttp.StatusBadGateway, x.route.page502_5(x.spec))
	case supervisor.Offline:
		x.why = "503 Service Unavailable: the application is offline (app_offline.htm)"
		return x.answerPage(fasthttp.StatusServiceUnavailable, x.route.app.OfflinePage())
	case supervisor.Stopped:
		return x.answerStopped()
	default:
		return x.answer(fasthttp.StatusServiceUnavailable, nil)
	}
	x.b = b
	x.pid = b.PID()
	up, _ := b.Upstream().(*upstream)
	if up == nil {
		return x.fail(stageNone, errNoUpstream)
	}
	x.up = up
	x.route.adopt(up)
	return false
}

// connect takes a pooled connection to the backend, or dials one; true
// when loopgate answered instead (503: the pool is exhausted).
func (x *exchange) connect() (answered bool, st stage, err error) {
	b, up := x.b, x.up
	ok, counted := x.enterQueue(up)
	if !ok {
		return x.answerQueueFull(), stageNone, nil
	}
	pool := up.pool(x.bulkUpload())
	handle, conn, lastUse, err := up.get(pool)
	if counted {
		x.leaveQueue()
	}
	if err != nil {
		if errors.Is(err, fasthttp.ErrNoFreeConns) {
			x.releaseUnused()
			x.s.log.Warn().Str("app", x.route.name).Int("pid", x.pid).Msg("backend connection pool exhausted")
			return x.answer(fasthttp.StatusServiceUnavailable, nil), stageNone, nil
		}
		b.Unreachable()
		return false, stageConnect, fmt.Errorf("connecting to %s: %w", b.Addr(), err)
	}
	// The connection's idle time is taken up to the request's arrival, a
	// time already read: the clock is not read again for it (see
	// trackedConn.idleRead for what that costs).
	if !lastUse.IsZero() && (!(x.idempotent && x.emptyBody()) || x.arrival().Sub(lastUse) > staleCheckIdle) && sockio.Stale(conn) {
		// This request could not be sent again once it reached the
		// backend, or the connection was idle long enough for the
		// backend's keep-alive timeout to have closed it (Node's is 5 s):
		// do not risk a connection the backend has closed.
		up.drop(pool, handle)
		up.flushIdle()
		if handle, conn, _, err = up.get(pool); err != nil {
			b.Unreachable()
			return false, stageRedial, fmt.Errorf("connecting to %s: %w", b.Addr(), err)
		}
	}
	x.pool, x.handle, x.conn = pool, handle, conn
	x.backendOK = true
	if x.stream != nil {
		x.stream.attach(conn)
	}
	return false, stageNone, nil
}

// send writes the request head (and a small body) in one write, and starts
// the pump for a streamed body.
func (x *exchange) send() (stage, error) {
	ctx, conn := x.ctx, x.conn
	in := headInput{target: x.target, token: x.b.Token(), remote: ctx.RemoteAddr(), local: ctx.LocalAddr(), https: ctx.IsTLS(), body: x.reqBody, contentLength: x.reqLen,
		forwardedFor: x.spec.ForwardedForFormat}
	if tc := tracked(ctx.Conn()); tc != nil {
		in.remoteEntry = tc.forwardedFor(in.remote, in.forwardedFor)
	}
	if in.https && x.s.clientCAs {
		if tc, ok := ctx.Conn().(connStater); ok {
			if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
				in.clientCert = st.PeerCertificates[0].Raw
			}
		}
	}
	x.head = appendRequestHead(x.head[:0], &ctx.Request.Header, &x.ri, &in)
	x.head = append(x.head, x.body...)
	streamed := x.streamedBody()
	var err error
	if streamed {
		// requestTimeout is the time waiting for the app: while the body
		// goes, each write to it has that long to progress (pumpConn),
		// and the response head gets its deadline once the body is sent
		// (pump); an app that reads steadily is not idle.
		setDeadline(conn.SetWriteDeadline, x.spec.RequestTimeout)
		_ = conn.SetReadDeadline(time.Time{})
		_, err = conn.Write(x.head)
	} else {
		// One deadline for the write and the response head that follows
		// it; a pooled connection's may be kept (BackendConn.SetTimeout).
		if bc, ok := conn.(*sockio.BackendConn); ok {
			_ = bc.SetTimeout(x.spec.RequestTimeout)
		} else {
			setDeadline(conn.SetDeadline, x.spec.RequestTimeout)
		}
		err = sockio.WriteAwait(conn, x.head)
	}
	if err != nil {
		// The backend had closed this connection (or never took it).
		x.dropConn()
		return stageSend, fmt.Errorf("sending request: %w", err)
	}
	if streamed {
		x.startPump()
	}
	return stageNone, nil
}

// readHead reads the response head, skipping 100 Continue and relaying
// 103; true when loopgate answered instead, because the client failed
// while sending the body (400) or sent too much of it (413).
func (x *exchange) readHead() (answered bool, st stage, err error) {
	ctx, conn := x.ctx, x.conn
	x.br = x.up.hc.AcquireReader(conn)
	rh := &ctx.Response.Header
	rh.EnableNormalizing()
	for interim := 0; ; interim++ {
		if interim > 0 && (!x.pumping || x.bodySent.Load()) {
			// (While the body goes the pump sets it at the body's end.)
			setDeadline(conn.SetReadDeadline, x.spec.RequestTimeout)
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
			var ce clientError
			if !errors.As(x.pumpErr, &ce) && errors.Is(x.pumpErr, os.ErrDeadlineExceeded) {
				// The app took no byte of the body for requestTimeout.
				return false, stageBadResponse, fmt.Errorf("sending request body: %w", x.pumpErr)
			}
			if x.pumpErr != nil && !errors.Is(x.pumpErr, errBodyCut) {
				if errors.Is(x.pumpErr, errTooLarge) {
					return x.answer(fasthttp.StatusRequestEntityTooLarge, nil), stageNone, nil
				}
				if errors.As(x.pumpErr, &ce) {
					return x.answerClientError(ce), stageNone, nil
				}
			}
			st = stageBadResponse
			if err == io.EOF {
				st = stageNoResponse
			}
			return false, st, fmt.Errorf("reading response head: %w", err)
		}
		code := rh.StatusCode()
		if code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			return false, stageNone, nil
		}
		if interim == maxInterim {
			x.stopPump()
			x.dropConn()
			return false, stageBadResponse, errInterim
		}
		if code == fasthttp.StatusEarlyHints {
			if hr, ok := ctx.Conn().(hintRelay); ok {
				hr.relayEarlyHints(rh)
			} else {
				_ = ctx.EarlyHints() // a client that cannot take it fails on the final response
			}
		}
	}
}
