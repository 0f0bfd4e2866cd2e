// HTTP/2 on the public edge: the HTTP/2 server, the handler that turns a
// stream into the exchange's request, and the watch that closes the
// backend connection when the client resets the stream.

package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// HTTP/2 on the public edge, HTTP/1.1 to the app.
//
// TLS listeners offer ALPN h2 and http/1.1. The handshake is done before
// fasthttp sees a connection (h2Front.handshake); an http/1.1 connection
// then goes to fasthttp unchanged, an h2 one to the standard library's
// HTTP/2 server, whose handler
// (h2Front.ServeHTTP) forwards through the very same exchange as the
// HTTP/1.1 front: each HTTP/2 request is turned into the HTTP/1.1 request
// head it stands for (RFC 9113 §8.2.3: Cookie fields joined with "; " by
// the library, :authority as Host), parsed by fasthttp into a RequestCtx
// whose connection is the stream (h2Conn), and handed to exchange.forward.
// So routing, the header rules of headers.go (MS-ASPNETCORE* stripped, the
// token, X-Forwarded-For ip:port, X-Forwarded-Proto https, TE and the other
// hop-by-hop headers dropped), maxAllowedContentLength, requestTimeout, the
// retry rule, the error pages and the upstream wire code exist once.
//
// What differs on HTTP/2: header names arrive lowercase and the order of
// different names is not kept (values of one name are); a backend failure mid-body resets the stream
// (RST_STREAM) instead of the connection; the backend's chunked trailers
// are relayed as HTTP/2 trailers. Connection-specific headers cannot reach
// loopgate on HTTP/2 (the library refuses such requests), and the app's
// Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding and Upgrade
// response headers are not sent (RFC 9113 §8.2.2).
//
// Limits: MaxConcurrentStreams (Config.HTTP2MaxConcurrentStreams), the
// header list size (Config.MaxHeaderBytes, 431 above it), and the
// library's defenses against rapid reset (CVE-2023-44487: handlers of
// reset streams count against the stream limit, and a connection queueing
// too many is closed with ENHANCE_YOUR_CALM) and CONTINUATION floods
// (CVE-2024-27316: header blocks are bounded while they are read).

// h2Front serves HTTP/2 connections with the standard library's HTTP/2
// server (net/http's, which carries the same code and defenses as
// golang.org/x/net/http2 without adding golang.org/x/text to the module).
// Safe for concurrent use.
type h2Front struct {
	s   *Server
	srv http.Server
}

// connKey keys the TLS connection in a request's context.
type connKey struct{}

func newH2Front(s *Server) *h2Front {
	f := &h2Front{s: s}
	f.srv = http.Server{
		Handler:        h2Handler{f: f},
		MaxHeaderBytes: s.cfg.MaxHeaderBytes,
		IdleTimeout:    s.cfg.IdleTimeout,
		HTTP2:          &http.HTTP2Config{MaxConcurrentStreams: s.cfg.HTTP2MaxConcurrentStreams},
		ErrorLog:       log.New(h2LogWriter{s.log}, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	return f
}

// h2LogWriter sends the HTTP/2 server's messages to the debug log.
type h2LogWriter struct{ l zerolog.Logger }

func (w h2LogWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// h2Handler forwards HTTP/2 requests.
type h2Handler struct{ f *h2Front }

// errBadTarget refuses an HTTP/2 :path that cannot be an HTTP/1.1 request
// target.
var errBadTarget = errors.New("request target with a space or control character")

func (h h2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.f.s
	start := time.Now()
	tc, ok := r.Context().Value(connKey{}).(*tls.Conn)
	if !ok {
		w.WriteHeader(http.StatusInternalServerError) // not reached: every connection is TLS
		return
	}
	ctx := new(fasthttp.RequestCtx)
	rc := http.NewResponseController(w)
	ctx.Init2(&h2Conn{tc: tc, rc: rc, w: w}, fasthttpLogger{s.log}, false)
	head, err := appendH1Head(nil, r)
	if err == nil {
		err = ctx.Request.Header.Read(bufio.NewReaderSize(bytes.NewReader(head), len(head)+512))
	}
	if err != nil {
		s.log.Debug().Err(err).Msg("HTTP/2 request refused")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if n := ctx.Request.Header.ContentLength(); n > 0 || n == -1 {
		ctx.Request.SetBodyStream(r.Body, n)
	}

	s.inflight.Add(1)
	x := s.exchanges.Get().(*exchange)
	watch := &streamWatch{start: start, trailers: r.Trailer}
	x.ctx, x.stream = ctx, watch
	// The request's context ends when the client resets the stream or its
	// connection dies: the backend connection is closed then, so the app
	// sees the disconnect and the exchange ends at once instead of at the
	// backend's answer or requestTimeout.
	stop := context.AfterFunc(r.Context(), watch.cancel)
	defer stop()
	if x.forward() {
		if watch.end() {
			x.backendOK = false
		}
		x.finish()
		resp := &ctx.Response
		copyResponseHead(w.Header(), &resp.Header)
		body := resp.Body()
		if resp.Header.ContentLength() < 0 || len(body) > 0 {
			w.Header().Set(fasthttp.HeaderContentLength, strconv.Itoa(len(body)))
		}
		w.WriteHeader(resp.StatusCode())
		if len(body) > 0 && r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
		return
	}
	// The backend's response head is in ctx.Response; its body streams.
	copyResponseHead(w.Header(), &ctx.Response.Header)
	w.WriteHeader(ctx.Response.StatusCode())
	if x.h2s != nil && ctx.Response.Header.ContentLength() != 0 {
		// A stream from an h2c app: the head goes now, as the app sent
		// it, for a client that waits for it before it sends (gRPC). A
		// response without a body (gRPC's Trailers-Only, its status in
		// this head) must instead end with it: its HEADERS frame carries
		// END_STREAM when the handler returns without a write.
		_ = rc.Flush()
	}
	_, err = x.WriteTo(h2Writer{w: w, rc: rc})
	complete := err == nil && x.bodyEnd
	if watch.end() {
		x.backendOK = false
	}
	_ = x.CloseWithError(err)
	if !complete {
		// RST_STREAM: the client must not take a cut body for a whole one.
		panic(http.ErrAbortHandler)
	}
	// The trailers addTrailer kept (ctx is this request's own, not pooled
	// with the exchange).
	rh := &ctx.Response.Header
	for name := range rh.Trailers() {
		w.Header().Add(http.TrailerPrefix+string(name), string(rh.PeekBytes(name)))
	}
}

// streamWatch closes the backend connection of an HTTP/2 request whose
// client reset the stream (or lost the connection) while the exchange
// waits on the backend. The exchange reports each backend connection it
// takes (attach) and ends the watch before the connection may go back to
// the pool (end), so a late reset never closes a connection another
// request uses. Safe for concurrent use.
type streamWatch struct {
	start    time.Time   // the request's arrival
	trailers http.Header // the request's trailers (http.Request.Trailer)
	mu       sync.Mutex
	conn     io.Closer // the backend connection (or h2c stream) in use; nil when none or ended
	reset    bool      // the client reset the stream
	closed   bool      // end was called
}

var _ streamHooks = (*streamWatch)(nil)

// arrived implements streamHooks.
func (w *streamWatch) arrived() time.Time { return w.start }

// trailer implements streamHooks.
func (w *streamWatch) trailer() http.Header { return w.trailers }

// attach records the exchange's backend connection, closing it at once if
// the stream is already reset.
func (w *streamWatch) attach(c io.Closer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reset {
		_ = c.Close()
		return
	}
	w.conn = c
}

// cancel is called when the request's context ends.
func (w *streamWatch) cancel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reset = true
	if w.conn != nil && !w.closed {
		_ = w.conn.Close()
	}
}

// canceled reports whether the client reset the stream.
func (w *streamWatch) canceled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reset
}

// end stops the watch and reports whether the stream was reset (and so the
// backend connection closed) before it.
func (w *streamWatch) end() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed, w.conn = true, nil
	return w.reset
}

// appendH1Head appends the HTTP/1.1 request head an HTTP/2 request stands
// for: request line with the :path as sent, Host from :authority, the
// header fields by name (sorted; values of one name in order), and the
// body framing: chunked when the client announced trailers, else
// Content-Length when it declared one, else chunked when a body may
// follow. The library has refused CR, LF and NUL in names
// and values.
func appendH1Head(dst []byte, r *http.Request) ([]byte, error) {
	for i := 0; i < len(r.RequestURI); i++ {
		if c := r.RequestURI[i]; c <= ' ' || c == 0x7f {
			return nil, errBadTarget
		}
	}
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, r.RequestURI...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, r.Host...)
	dst = append(dst, "\r\n"...)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding":
			continue
		}
		for _, v := range r.Header[k] {
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	switch {
	case len(r.Trailer) > 0:
		// Announced trailers come after the body: it is streamed, so that
		// an h2c app gets them (h2cTrailers).
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case r.ContentLength > 0 || (r.ContentLength == 0 && r.Header.Get("Content-Length") != ""):
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, r.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	case r.ContentLength < 0:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return append(dst, "\r\n"...), nil
}

// responseHopHeader reports a response header HTTP/2 forbids (RFC 9113
// §8.2.2) or that framing replaces.
func responseHopHeader(name []byte) bool {
	return equalFoldASCII(name, "connection") || equalFoldASCII(name, "keep-alive") ||
		equalFoldASCII(name, "proxy-connection") || equalFoldASCII(name, "transfer-encoding") ||
		equalFoldASCII(name, "upgrade") || equalFoldASCII(name, "trailer")
}

// copyResponseHead copies the response head the HTTP/1.1 front would send
// (filterResponseHead already applied) to an HTTP/2 response, minus the
// connection-specific headers.
func copyResponseHead(dst http.Header, rh *fasthttp.ResponseHeader) {
	for k, v := range rh.All() {
		if responseHopHeader(k) {
			continue
		}
		if equalFoldASCII(k, "content-length") && rh.ContentLength() < 0 {
			continue
		}
		if equalFoldASCII(k, "date") {
			continue // the backend's: the HTTP/2 server adds loopgate's
		}
		dst.Add(string(k), string(v))
	}
}
