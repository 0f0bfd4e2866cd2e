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
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
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
//   - 103 Early Hints from the app are relayed as from an HTTP/1.1 app
//     (h2cInterim), other 1xx dropped.

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
	s.ctx = httptrace.WithClientTrace(s.ctx, &httptrace.ClientTrace{Got1xxResponse: x.h2cInterim})
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
	} else if s.body != nil && x.reqBody == reqBodyChunked {
		x.h1Trailers(req, s.body)
	}
	if tc := tracked(ctx.Conn()); tc != nil && x.streamedBody() && x.stream == nil {
		s.client, s.slack = tc.Conn, finSlack+int64(x.s.cfg.MaxHeaderBytes)
		if x.reqBody == reqBodySized {
			s.sized = x.reqLen
		}
	}
	if s.body != nil {
		s.body.idle.L = &s.body.mu
		req.Body = s.body
		req.ContentLength = -1
		if x.reqBody == reqBodySized {
			req.ContentLength = x.reqLen
		}
	}

	pool := x.up.h2c()
	cc, err := pool.get(s.ctx, h2cWait{enter: x.enterStreamQueue, leave: x.leaveQueue, timeout: x.s.cfg.BackendQueueTimeout})
	if err != nil {
		x.endH2C()
		switch {
		case errors.Is(err, errPoolClosed):
			return false, stageSend, err
		case errors.Is(err, errStreamQueueFull):
			return x.answerQueueFull(), stageNone, nil
		case errors.Is(err, errNoFreeStream):
			x.releaseUnused()
			x.s.log.Warn().Str("app", x.route.name).Int("pid", x.pid).Msg("no h2c stream to the backend came free within --backend-queue-timeout: 503")
			return x.answer(fasthttp.StatusServiceUnavailable, nil), stageNone, nil
		}
		x.b.Unreachable()
		return false, stageConnect, fmt.Errorf("connecting to %s: %w", x.b.Addr(), err)
	}
	s.pool = pool
	pool.streams.Add(1)
	// requestTimeout counts from here: the wait for a stream has its own
	// bound, as the wait for an HTTP/1.1 connection.
	s.start()
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
		if requestTrailerKept([]byte(k), nil, &x.ri) {
			req.Trailer[k] = nil
		}
	}
	// Read by the HTTP/2 client's writer goroutine, which is the one that
	// reads the body and so runs atEOF.
	body.atEOF = func() {
		for k := range req.Trailer {
			for _, v := range tr[k] {
				if requestTrailerKept([]byte(k), []byte(v), &x.ri) {
					req.Trailer[k] = append(req.Trailer[k], v)
				}
			}
		}
	}
}

// h1Trailers passes an HTTP/1.1 client's chunked trailer section on to
// the app as HTTP/2 trailers, by the rule an HTTP/1.1 app's trailer
// section follows (requestTrailerKept): every field of it, announced or
// not, follows the body, and the names announced in Trailer are announced
// to the app. fasthttp reads the trailer section into the request header
// when the body stream ends (it refuses framing, routing and
// authentication fields there: the body fails), after the head's fields
// (headFields). req.Trailer is set, even empty, because the HTTP/2
// transport sends trailers only for a request that has it: the section's
// names are known only at the body's end.
func (x *exchange) h1Trailers(req *http.Request, body *h2cBody) {
	h := &x.ctx.Request.Header
	head := headFields(h)
	req.Trailer = http.Header{}
	for name := range h.Trailers() {
		if requestTrailerKept(name, nil, &x.ri) {
			req.Trailer[http.CanonicalHeaderKey(string(name))] = nil
		}
	}
	// Run by the HTTP/2 client's writer goroutine at the body's clean
	// end, after fasthttp read the trailer section and before the
	// client reads req.Trailer.
	body.atEOF = func() {
		for name, value := range x.trailerSection(head) {
			if requestTrailerKept(name, value, &x.ri) {
				k := http.CanonicalHeaderKey(string(name))
				req.Trailer[k] = append(req.Trailer[k], string(value))
			}
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
