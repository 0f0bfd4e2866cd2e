package main

import (
	"context"
	"net"
	"net/netip"

	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/loopgate/loopgate/internal/status"
	"github.com/loopgate/loopgate/supervisor"
	"github.com/rs/zerolog"
)

// front is the fastpath server as serve drives it.
type front struct {
	srv    *fastpath.Server
	nPlain int // the first nPlain bound listeners are plain HTTP, the rest TLS
}

// fastpathConfig maps the serve flags onto the front server's
// configuration; a limit left at 0 keeps fastpath's default.
func fastpathConfig(cfg *serveConfig, obs fastpath.Observer) fastpath.Config {
	return fastpath.Config{
		Listen:          cfg.Listen,
		TLSListen:       cfg.TLSListen,
		TLSCertFile:     cfg.TLSCert,
		TLSKeyFile:      cfg.TLSKey,
		TLSClientCAFile: cfg.TLSClientCA,
		DisableHTTP2:    !cfg.HTTP2,

		MaxConns:               cfg.Limits.MaxConns,
		MaxHeaderBytes:         cfg.Limits.MaxHeaderBytes,
		HeaderReadTimeout:      cfg.Limits.HeaderReadTimeout,
		BodyReadTimeout:        cfg.Limits.BodyReadTimeout,
		SendTimeout:            cfg.Limits.SendTimeout,
		IdleTimeout:            cfg.Limits.IdleTimeout,
		ConnectTimeout:         cfg.Limits.BackendConnectTimeout,
		MaxConnsPerBackend:     cfg.Limits.BackendMaxConns,
		BackendQueueTimeout:    cfg.Limits.BackendQueueTimeout,
		BackendIdleTimeout:     cfg.Limits.BackendIdleTimeout,
		MaxResponseHeaderBytes: cfg.Limits.BackendMaxResponseHeaderBytes,

		Observer: obs,
	}
}

// newFront builds the front server for the supervisor's apps and binds its
// listeners, so a busy port is reported before serve says it is ready.
func newFront(cfg *serveConfig, sup *supervisor.Supervisor, obs fastpath.Observer, log zerolog.Logger) (*front, error) {
	apps := make([]fastpath.App, 0, len(sup.Apps()))
	for _, a := range sup.Apps() {
		apps = append(apps, fastpath.FromSupervisor(a))
	}
	srv, err := fastpath.New(fastpathConfig(cfg, obs), apps, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	return &front{srv: srv, nPlain: len(cfg.Listen)}, nil
}

// Listeners are the bound addresses (with the kernel's port for ":0").
func (f *front) Listeners() []status.Listener {
	addrs := f.srv.Addrs()
	out := make([]status.Listener, len(addrs))
	for i, a := range addrs {
		out[i] = status.Listener{Addr: a.String(), TLS: i >= f.nPlain}
	}
	return out
}

func (f *front) Serve() error                       { return f.srv.Serve() }
func (f *front) Shutdown(ctx context.Context) error { return f.srv.Shutdown(ctx) }
func (f *front) ReloadCertificates() error          { return f.srv.ReloadCertificates() }

// observer feeds every finished request to the metrics and, unless
// --access-log=false, to one access-log line. It allocates nothing.
type observer struct {
	metrics *metrics.Metrics
	log     zerolog.Logger
	access  bool
	apps    map[string]int // app name -> index in metrics.Options.Apps
}

var _ fastpath.Observer = (*observer)(nil)

func newObserver(m *metrics.Metrics, names []string, log zerolog.Logger, access bool) *observer {
	o := &observer{metrics: m, log: log, access: access, apps: make(map[string]int, len(names))}
	for i, n := range names {
		o.apps[n] = i
	}
	return o
}

// ObserveRequest is called by fastpath on the request's goroutine.
func (o *observer) ObserveRequest(i fastpath.RequestInfo) {
	app, ok := o.apps[i.App]
	if !ok {
		app = -1 // metrics.NoApp
	}
	o.metrics.Observe(app, i.Method.String(), i.Status, i.Duration)
	if !o.access {
		return
	}
	e := o.log.Info()
	if e == nil { // info is filtered out
		return
	}
	var buf [64]byte
	e = e.Str("event", "access").
		Bytes("method", i.RawMethod).
		Bytes("path", i.Target).
		Int("status", i.Status).
		Int64("bytes", i.BytesOut).
		Int64("bytes_in", i.BytesIn).
		Float64("duration_ms", float64(i.Duration.Microseconds())/1000).
		Str("app", i.App).
		Int("pid", i.PID).
		Bytes("client", appendAddr(buf[:0], i.RemoteAddr))
	if i.Aborted {
		e = e.Bool("aborted", true)
	}
	if i.Retried {
		e = e.Bool("retried", true)
	}
	if i.Upgraded {
		e = e.Bool("websocket", true)
	}
	e.Send()
}

// appendAddr writes a client address without allocating for TCP peers;
// IPv4 peers are shown as 1.2.3.4:port, not in IPv4-mapped IPv6 form.
func appendAddr(dst []byte, a net.Addr) []byte {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(dst)
	case nil:
		return dst
	}
	return append(dst, a.String()...)
}
