// loopgate's own answers: 502.3 for a backend that failed before its
// response head, 400, 404, 413, 502.5 and 503, what becomes of a request
// body nobody read, the answer to Expect: 100-continue, and the answers to
// requests fasthttp could not parse (400, 408, 431).

package fastpath

import (
	"errors"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

var strTextHTML = []byte("text/html")

// fail answers 502.3 for a backend that could not be reached or failed
// before the response head was complete, at stage st (stageNone when not
// an attempt's stage). The page and the log name the cause when it is
// known.
func (x *exchange) fail(st stage, err error) bool {
	cause := gatewayCause(st, err)
	if x.stream != nil && x.stream.canceled() {
		// The client reset the stream, and its backend connection was
		// closed for it: not the backend's failure.
		x.aborted = true
		x.s.log.Debug().Err(err).Str("app", x.route.name).Int("pid", x.pid).Msg("client reset the stream")
	} else {
		x.s.log.Warn().Err(err).Str("app", x.route.name).Int("pid", x.pid).Str("cause", cause.String()).Msg("bad gateway")
	}
	x.stopPump()
	x.dropConn()
	x.releaseBackend()
	x.ctx.Response.Header.Reset()
	page := gatewayPages[cause]
	x.why = gatewayWhy[cause]
	if cause == gatewayTimeout {
		page = x.route.timeoutPage(x.spec.RequestTimeout)
	}
	return x.answerPage(fasthttp.StatusBadGateway, page)
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
	if x.ctx.Response.StatusCode() == status { // not turned into a gRPC status
		x.ctx.Response.Header.SetContentTypeBytes(strTextHTML)
	}
	return true
}

// answer answers status with body (nil for none) from loopgate itself. A
// gRPC client gets the answer as a gRPC status instead (grpcStatus, with
// x.why as its message). A
// request body that was not read to its end makes the client connection
// close after the answer, so its rest is never taken for a request. An
// answer given before any of a body of at most maxDiscardBytes was read
// (503 offline, 502.5, 404) reads and drops that body first: a client
// still sending it would otherwise meet a reset on the closed connection
// and lose the answer, and the connection stays usable.
func (x *exchange) answer(status int, body []byte) bool {
	x.releaseBackend()
	if !x.consumed && x.pumpBuf == nil && x.reqBody == reqBodySized && x.reqLen > 0 && x.reqLen <= maxDiscardBytes &&
		status != fasthttp.StatusRequestEntityTooLarge && status != fasthttp.StatusBadRequest &&
		status != fasthttp.StatusHTTPVersionNotSupported {
		x.consumed = x.discardBody()
	}
	r := &x.ctx.Response
	r.Header.SetStatusCode(status)
	r.SetBodyRaw(body)
	if !x.ctx.IsHead() {
		x.bytesOut = int64(len(body)) // the page loopgate sends counts as any body
	}
	if !x.consumed {
		r.Header.SetConnectionClose()
		lingerOnClose(x.ctx.Conn())
	}
	x.status = status
	x.bodyEnd = true
	if isGRPC(&x.ctx.Request.Header) {
		why := x.why
		if why == "" {
			why = fasthttp.StatusMessage(status)
		}
		grpcStatus(r, status, why)
		x.bytesOut = 0
	}
	setDeadline(x.ctx.Conn().SetWriteDeadline, x.s.cfg.SendTimeout)
	return true
}

// expect answers "Expect: 100-continue": a body over the app's
// maxAllowedContentLength gets 413 before the client sends it, a version
// loopgate refuses its 505 (or 400), a path climbing above "/" 400.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	headRead(ctx.Conn())
	h := &ctx.Request.Header
	if status := refuseVersion(h); status != 0 {
		return status // and no 100 Continue for a request loopgate refuses
	}
	var arr [256]byte
	target, _, err := forwardedTarget(arr[:0], h.RequestURI())
	if err != nil {
		return fasthttp.StatusBadRequest
	}
	if rt := s.router.match(target); rt != nil {
		if int64(h.ContentLength()) > rt.app.Spec().MaxAllowedContentLength {
			return fasthttp.StatusRequestEntityTooLarge
		}
	}
	return fasthttp.StatusContinue
}

// serveError answers a request fasthttp could not parse: 431 for a header
// block over MaxHeaderBytes, 408 for a client too slow to send its headers,
// 400 otherwise. The connection is closed after the answer.
func (s *Server) serveError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		status = fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		status = fasthttp.StatusRequestTimeout
	}
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	s.log.Debug().Err(err).Int("status", status).Msg("request refused")
	if o := s.cfg.Observer; o != nil {
		o.ObserveRequest(RequestInfo{Status: status, Duration: time.Since(ctx.Time()), RemoteAddr: ctx.RemoteAddr()})
	}
}
