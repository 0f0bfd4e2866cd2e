// The front server: its lifecycle (New, Listen, Serve, StopAccepting,
// Shutdown), the TLS certificates, and WebSocket tunnel bookkeeping.

package fastpath

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
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
	parkOnce  sync.Once
	park      *parking // idle plain connections; nil until a plain listener is served, or parking off

	mu        sync.Mutex
	listeners []boundListener
	serving   []*limitedListener // what ServeListener serves, closed by StopAccepting
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
	router, err := newRouter(apps)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     c,
		log:     logger,
		router:  router,
		limiter: newConnLimiter(c.MaxConns),
		tunnels: map[*exchange]net.Conn{},
	}
	s.exchanges.New = func() any { return &exchange{s: s} }
	if len(c.TLSListen) > 0 {
		if err := s.ReloadCertificates(); err != nil {
			return nil, err
		}
		// Built once and never replaced: its automatic session ticket keys
		// (rotated daily by crypto/tls) live in it, so a certificate reload
		// keeps every issued ticket valid.
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
		HeaderReceived:                keepAliveLaterMinor,
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
		// A worker whose connection was parked (see parkAfter) keeps the
		// stack it grew until it is reaped: soon, so that parking frees it.
		MaxIdleWorkerDuration: parkAfter,
		CloseOnShutdown:       true,
		SecureErrorLogMessage: true,
		ConnState:             connState,
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
	listen := s.cfg.ListenFunc
	if listen == nil {
		listen = net.Listen
	}
	bind := func(addr string, isTLS bool) error {
		ln, err := listen("tcp", addr)
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
	ll := &limitedListener{Listener: ln, lim: s.limiter, log: s.log, done: make(chan struct{}), bufSize: s.cfg.MaxHeaderBytes}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	if !isTLS {
		s.parkOnce.Do(func() {
			s.park = newParking(s.cfg.IdleTimeout, s.limiter, func(c net.Conn) { _ = s.srv.ServeConn(c) })
		})
		ll.park = s.park
	}
	s.serving = append(s.serving, ll)
	s.mu.Unlock()
	var l net.Listener = ll
	if isTLS {
		l = tls.NewListener(l, s.tlsConf)
		if s.h2 != nil {
			l = s.h2.listener(l)
		}
		l = guardedListener{Listener: l, bufSize: s.cfg.MaxHeaderBytes}
	}
	return s.srv.Serve(l)
}

// Shutdown stops accepting connections, lets in-flight requests finish and
// closes idle connections; WebSocket tunnels are closed. When ctx ends
// first, every remaining connection is closed and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()
	s.mu.Lock()
	park := s.park
	s.mu.Unlock()
	park.stop()
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

// StopAccepting closes every listener: from its return on, a connect is
// refused, while the open connections are served on until Shutdown, which
// calls it first. A caller that announces the stop (sd_notify STOPPING=1)
// calls it before, so the announcement follows the close.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	s.closing = true
	serving := s.serving
	s.serving = nil
	s.mu.Unlock()
	for _, l := range serving {
		_ = l.Close()
	}
	s.closeListeners()
}

// WaitTunnels waits until no WebSocket tunnel is open, or until ctx is
// done (its error is returned). A binary upgrade calls it after
// StopAccepting and before Shutdown, which closes the tunnels still open,
// so that tunnels get the drain timeout as requests do.
func (s *Server) WaitTunnels(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.tunnels)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
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
	var polled []net.Conn
	for x, c := range s.tunnels {
		if _, ok := c.(tunnelCloser); ok {
			polled = append(polled, c) // it finishes its exchange, under s.mu
			continue
		}
		_ = c.Close()
		_ = x.conn.Close()
	}
	s.mu.Unlock()
	for _, c := range polled {
		_ = c.Close()
	}
}

// fasthttpLogger sends fasthttp's own messages (connection errors) to the
// debug log.
type fasthttpLogger struct{ l zerolog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug().Msgf(format, args...)
}
