package fastpath

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Server is loopgate's front server: it accepts client connections on the
// configured listeners, routes each request to an app and forwards it. A
// Server is safe for concurrent use; it must not be copied.
//
// Lifecycle: New, then Listen (binds, so the caller can report a busy port
// before anything else starts), Serve (blocks), and Shutdown from another
// goroutine. ServeListener serves a listener the caller made.
type Server struct {
	cfg       Config
	log       zerolog.Logger
	router    *router
	srv       *fasthttp.Server
	certs     atomic.Pointer[tls.Certificate]
	tlsConf   *tls.Config
	clientCAs bool
	exchanges sync.Pool
	inflight  atomic.Int64
	limiter   *connLimiter
	h2        *h2Front // nil: HTTP/2 off or no TLS listener

	mu        sync.Mutex
	listeners []boundListener
	tunnels   map[*exchange]net.Conn
	closing   bool
}

type boundListener struct {
	ln  net.Listener
	tls bool
}

// New builds a front server for apps (each mounted at its VirtualPath) with
// cfg's limits. It reads the TLS certificate, key and client CA files if
// TLS listeners are configured. It binds nothing yet.
func New(cfg Config, apps []App, logger zerolog.Logger) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rt, err := newRouter(apps)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     c,
		log:     logger,
		router:  rt,
		limiter: newConnLimiter(c.MaxConns),
		tunnels: map[*exchange]net.Conn{},
	}
	s.exchanges.New = func() any { return &exchange{s: s} }
	if len(c.TLSListen) > 0 {
		if err := s.ReloadCertificates(); err != nil {
			return nil, err
		}
		s.tlsConf = &tls.Config{
			MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"},
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.certs.Load(), nil
			},
		}
		if c.TLSClientCAFile != "" {
			pem, err := os.ReadFile(c.TLSClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: reading client CA file: %w", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: %s: no PEM certificate found", ErrConfig, c.TLSClientCAFile)
			}
			s.tlsConf.ClientCAs = pool
			s.tlsConf.ClientAuth = tls.VerifyClientCertIfGiven
			s.clientCAs = true
		}
		if !c.DisableHTTP2 {
			s.tlsConf.NextProtos = []string{"h2", "http/1.1"}
			s.h2 = newH2Front(s)
		}
	}
	s.srv = &fasthttp.Server{
		Handler:                       s.serveHTTP,
		ErrorHandler:                  s.serveError,
		ExpectHandler:                 s.expect,
		Logger:                        fasthttpLogger{logger},
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		MaxRequestBodySize:            smallBodyBytes,
		ReadBufferSize:                c.MaxHeaderBytes,
		WriteBufferSize:               16 << 10,
		ReadTimeout:                   c.HeaderReadTimeout,
		IdleTimeout:                   c.IdleTimeout,
		Concurrency:                   c.MaxConns + 1, // the listener limit is the real one
		CloseOnShutdown:               true,
		SecureErrorLogMessage:         true,
		ConnState:                     connState,
	}
	return s, nil
}

// ReloadCertificates re-reads the TLS certificate and key files. Connections
// and handshakes in progress keep the certificate they started with; new
// handshakes get the new one. On error the old certificate stays in use.
func (s *Server) ReloadCertificates() error {
	if s.cfg.TLSCertFile == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s: %w", s.cfg.TLSCertFile, err)
	}
	s.certs.Store(&cert)
	return nil
}

// Listen binds every configured listener. Errors name the address.
func (s *Server) Listen() error {
	bind := func(addr string, isTLS bool) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, boundListener{ln, isTLS})
		s.mu.Unlock()
		return nil
	}
	for _, a := range s.cfg.Listen {
		if err := bind(a, false); err != nil {
			s.closeListeners()
			return err
		}
	}
	for _, a := range s.cfg.TLSListen {
		if err := bind(a, true); err != nil {
			s.closeListeners()
			return err
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		_ = l.ln.Close()
	}
	s.listeners = nil
}

// Addrs returns the bound listeners' addresses, plain ones first.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.ln.Addr())
	}
	return out
}

// Serve serves every listener bound by Listen (binding them first if Listen
// was not called) and blocks until Shutdown. It returns nil after a
// Shutdown, or the first listener's failure.
func (s *Server) Serve() error {
	s.mu.Lock()
	bound := len(s.listeners) > 0
	s.mu.Unlock()
	if !bound {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	ls := append([]boundListener(nil), s.listeners...)
	s.mu.Unlock()
	if len(ls) == 0 {
		return fmt.Errorf("%w: no listen address", ErrConfig)
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- s.ServeListener(l.ln, l.tls) }()
	}
	var first error
	for range ls {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// ServeListener serves ln (TLS-terminating it with the configured
// certificate when isTLS) until Shutdown; it returns nil after Shutdown.
func (s *Server) ServeListener(ln net.Listener, isTLS bool) error {
	if isTLS && s.tlsConf == nil {
		return fmt.Errorf("%w: TLS listener %s without a certificate", ErrConfig, ln.Addr())
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	var l net.Listener = &limitedListener{Listener: ln, lim: s.limiter, log: s.log, done: make(chan struct{})}
	if isTLS {
		l = tls.NewListener(l, s.tlsConf)
		if s.h2 != nil {
			l = s.h2.listener(l)
		}
	}
	return s.srv.Serve(l)
}

// Shutdown stops accepting connections, lets in-flight requests finish and
// closes idle connections; WebSocket tunnels are closed. When ctx ends
// first, every remaining connection is closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- s.srv.ShutdownWithContext(ctx) }()
	s.closeTunnels()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if s.h2 != nil {
		if h2err := s.h2.shutdown(ctx); err == nil {
			err = h2err
		}
	}
	if err != nil {
		s.limiter.closeAll()
	}
	s.closeListeners()
	return err
}

// InFlight returns the number of requests being forwarded now, WebSocket
// tunnels included.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// OpenConns returns the number of open client connections.
func (s *Server) OpenConns() int { return int(s.limiter.open.Load()) }

func (s *Server) addTunnel(x *exchange, c net.Conn) {
	s.mu.Lock()
	closing := s.closing
	s.tunnels[x] = c
	s.mu.Unlock()
	if closing {
		_ = c.Close()
	}
}

func (s *Server) removeTunnel(x *exchange) {
	s.mu.Lock()
	delete(s.tunnels, x)
	s.mu.Unlock()
}

func (s *Server) closeTunnels() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for x, c := range s.tunnels {
		_ = c.Close()
		_ = x.conn.Close()
	}
}

// expect answers "Expect: 100-continue": a body over the app's
// maxAllowedContentLength gets 413 before the client sends it.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	h := &ctx.Request.Header
	if rt := s.router.match(h.RequestURI()); rt != nil {
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

// fasthttpLogger sends fasthttp's own messages (connection errors) to the
// debug log.
type fasthttpLogger struct{ l zerolog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug().Msgf(format, args...)
}

// resetConn makes closing c send a TCP RST, so the client sees an aborted
// response rather than a complete one.
func resetConn(c net.Conn) {
	for {
		switch cc := c.(type) {
		case *tls.Conn:
			c = cc.NetConn()
		case *trackedConn:
			c = cc.Conn
		case *net.TCPConn:
			_ = cc.SetLinger(0)
			return
		default:
			return
		}
	}
}

// connLimiter bounds open client connections across listeners and can
// close them all at a forced shutdown. At the limit it makes room by
// closing the keep-alive connection that has been idle longest, as nginx
// does: a client reopens an idle connection for free, while a new client
// kept waiting gets nothing. Safe for concurrent use.
type connLimiter struct {
	sem      chan struct{} // a slot per handed-out connection
	open     atomic.Int64  // accepted and not yet closed
	reclaims atomic.Int64  // idle connections closed to make room
	lastWarn atomic.Int64  // unix ns of the last "limit reached" warning
	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
}

// reclaimWait is how long Accept waits at the limit for a slot before it
// looks for an idle connection to close again.
const reclaimWait = 50 * time.Millisecond

// take waits for a connection slot, closing idle connections to make room;
// false when done closes first.
func (l *connLimiter) take(done <-chan struct{}, log *zerolog.Logger) bool {
	select {
	case l.sem <- struct{}{}:
		return true
	case <-done:
		return false
	default:
	}
	var t *time.Timer
	for {
		if l.closeIdlest() {
			l.reclaims.Add(1)
			if now := time.Now().UnixNano(); now-l.lastWarn.Load() > int64(time.Minute) {
				l.lastWarn.Store(now)
				log.Warn().Str("event", "max_conns").Int("max_conns", cap(l.sem)).Int64("reclaimed", l.reclaims.Load()).
					Msg("connection limit reached; closing the longest-idle keep-alive connections to admit new ones")
			}
		}
		if t == nil {
			t = time.NewTimer(reclaimWait)
			defer t.Stop()
		} else {
			t.Reset(reclaimWait)
		}
		select {
		case l.sem <- struct{}{}:
			return true
		case <-done:
			return false
		case <-t.C:
		}
	}
}

// closeIdlest closes the connection idle longest between two requests, if
// any is; connections that are new, busy or hijacked are never closed.
func (l *connLimiter) closeIdlest() bool {
	var idlest *trackedConn
	var since int64
	l.mu.Lock()
	for c := range l.conns {
		if at := c.idleSince.Load(); at != 0 && (idlest == nil || at < since) {
			idlest, since = c, at
		}
	}
	l.mu.Unlock()
	if idlest == nil {
		return false
	}
	_ = idlest.Close()
	return true
}

// lingerTime bounds how long a connection closed with an unread request
// body keeps reading (and dropping) what the client still sends; at most
// maxDiscardBytes are read. nginx's lingering close, for the same reason:
// closing a socket with unread data sends a reset, which can destroy the
// answer (a 413, say) before the client has read it.
const lingerTime = 2 * time.Second

// lingerOnClose makes closing c a lingering close: send FIN after the
// answer, drop what the client still sends for up to lingerTime, then
// close. For connections whose request body was left unread.
func lingerOnClose(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*trackedConn); ok {
		tc.linger.Store(true)
	}
}

// connState is fasthttp's ConnState hook: it marks connections idle between
// requests, for the limiter.
func connState(c net.Conn, st fasthttp.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	if st == fasthttp.StateIdle {
		tc.idleSince.Store(time.Now().UnixNano())
	} else {
		tc.idleSince.Store(0)
	}
}

func newConnLimiter(n int) *connLimiter {
	return &connLimiter{sem: make(chan struct{}, n), conns: map[*trackedConn]struct{}{}}
}

func (l *connLimiter) closeAll() {
	l.mu.Lock()
	cs := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// limitedListener hands out a connection only while the limiter has room
// (closing idle keep-alive connections to make some): past MaxConns with
// none idle, one accepted connection waits for a slot and the others in
// the kernel's accept queue. It also rides out a
// shortage of file descriptors or kernel memory (EMFILE, ENFILE, ENOBUFS,
// ENOMEM), which fasthttp would take as the listener's end: it logs the
// first failure, retries with a backoff from 5 ms to 1 s (the connections
// wait in the accept queue meanwhile), and logs once more when accepting
// works again. Accept is called from one goroutine.
type limitedListener struct {
	net.Listener
	lim       *connLimiter
	log       zerolog.Logger
	done      chan struct{}
	closeOnce sync.Once
}

const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func (l *limitedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && resourceShortage(err) {
		c, err = l.retryAccept(err)
	}
	if err != nil {
		return nil, err
	}
	// The slot is taken after the accept, so idle connections are closed
	// only for a client that is really waiting.
	if !l.lim.take(l.done, &l.log) {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, lim: l.lim, raw: newRawIO(c)}
	l.lim.open.Add(1)
	l.lim.mu.Lock()
	l.lim.conns[tc] = struct{}{}
	l.lim.mu.Unlock()
	return tc, nil
}

// retryAccept keeps accepting after a resource shortage until it works,
// another error comes or the listener closes.
func (l *limitedListener) retryAccept(first error) (net.Conn, error) {
	l.log.Error().Str("event", "accept_failing").Err(first).Str("addr", l.Addr().String()).
		Msg("cannot accept connections; retrying, new connections wait in the kernel's accept queue")
	since := time.Now()
	failures := 1
	backoff := minAcceptBackoff
	t := time.NewTimer(backoff)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err == nil || !resourceShortage(err) {
			l.log.Warn().Str("event", "accept_recovered").Str("addr", l.Addr().String()).Int("failures", failures).
				Dur("after", time.Since(since)).Msg("accepting connections again")
			return c, err
		}
		failures++
		backoff = min(2*backoff, maxAcceptBackoff)
		t.Reset(backoff)
	}
}

// resourceShortage reports whether an accept failed for want of file
// descriptors or kernel memory: a passing condition, not the listener's end.
func resourceShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// trackedConn gives its limiter slot back when closed.
type trackedConn struct {
	net.Conn
	lim       *connLimiter
	closed    atomic.Bool
	idleSince atomic.Int64 // unix ns since it waits for a next request; 0: new, busy or hijacked
	gather    gatherState  // owned by the connection's serving goroutine
	raw       *rawIO       // nil: not TCP, the Conn's own Read and Write are used
	linger    atomic.Bool  // see lingerOnClose
}

func (c *trackedConn) Close() error {
	if tcp, ok := c.Conn.(*net.TCPConn); ok && c.linger.CompareAndSwap(true, false) {
		drainBeforeClose(tcp)
	}
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.lim.mu.Lock()
		delete(c.lim.conns, c)
		c.lim.mu.Unlock()
		c.lim.open.Add(-1)
		<-c.lim.sem
	}
	return err
}

// drainBeforeClose half-closes c and reads and drops what the client still
// sends, until it closes its side, lingerTime passes or maxDiscardBytes
// were read.
func drainBeforeClose(c *net.TCPConn) {
	if c.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for read := 0; read < maxDiscardBytes; {
		n, err := c.Read(*bp)
		read += n
		if err != nil {
			return
		}
	}
}
