package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/loopgate/loopgate/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Health is what /healthz reports.
type Health int32

const (
	// Starting: the front listeners are not serving yet (503).
	Starting Health = iota
	// Serving: requests are being accepted (200).
	Serving
	// Draining: a graceful stop has begun (503); it never goes back.
	Draining
)

func (h Health) String() string {
	switch h {
	case Serving:
		return "ok"
	case Draining:
		return "draining"
	}
	return "starting"
}

// Options configure the admin server.
type Options struct {
	// Snapshot builds the /status document; called once per request. nil
	// answers /status with 404.
	Snapshot func() status.Snapshot
	// Gatherer is what /metrics exposes. nil answers /metrics with 404.
	Gatherer prometheus.Gatherer
	// Logger gets errors from the HTTP server and from metric collection.
	Logger zerolog.Logger
}

// Server is the admin HTTP server. It is safe for concurrent use.
type Server struct {
	o      Options
	health atomic.Int32
	srv    *http.Server
}

// New returns a server in the Starting state.
func New(o Options) *Server {
	s := &Server{o: o}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          stdlog.New(o.Logger.With().Str("component", "admin").Logger(), "", 0),
	}
	return s
}

// SetHealth moves the health state. Draining is final: once set, later
// calls cannot make the endpoint green again.
func (s *Server) SetHealth(h Health) {
	for {
		old := s.health.Load()
		if Health(old) == Draining || s.health.CompareAndSwap(old, int32(h)) {
			return
		}
	}
}

// Health returns the current health state.
func (s *Server) Health() Health { return Health(s.health.Load()) }

// Handler serves /healthz, /status and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	if s.o.Snapshot != nil {
		mux.HandleFunc("GET /status", s.status)
	}
	if s.o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      promLogger{s.o.Logger},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /{$}", s.index)
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	h := s.Health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h != Serving {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, h)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	body, err := json.MarshalIndent(s.o.Snapshot(), "", "  ")
	if err != nil {
		s.o.Logger.Error().Err(err).Msg("encoding /status")
		http.Error(w, "encoding status failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(body, '\n'))
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "loopgate admin endpoint: /healthz /status /metrics")
}

// Serve serves on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

// Shutdown stops the server, letting requests in progress finish until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}

// promLogger passes promhttp's errors (a collector that failed) to zerolog.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error().Msg(fmt.Sprint(v...))
}
