package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
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
	// Ready reports whether the apps can take traffic, for /readyz: ok, or
	// false and one line per reason (an app in crashloop, ...). Called once
	// per /readyz request while the health is Serving; nil means the apps
	// never hold readiness back.
	Ready func() (ok bool, why []string)
	// Upgrade replaces the running loopgate with the binary on disk (POST
	// /upgrade, `loopgate upgrade`) and returns once the new process is
	// ready or the upgrade failed. Its result is answered as JSON with 200;
	// an error as text with 500 (409 when errors.Is(err,
	// ErrUpgradeInProgress)). nil answers /upgrade with 404.
	Upgrade func(ctx context.Context) (any, error)
	// Hosts are the host names, besides localhost, that requests may name in
	// their Host header (case-insensitive, without a port): serve passes
	// --admin-host and the host of --admin when it is a name. IP addresses
	// are always accepted. See Handler for why.
	Hosts []string
	// SampleEvery is how often the status page's chart samples Gatherer
	// (120 samples are shown). Default 5 s.
	SampleEvery time.Duration
}

// Server is the admin HTTP server. It is safe for concurrent use.
type Server struct {
	o           Options
	health      atomic.Int32
	srv         *http.Server
	hist        *history
	sampleEvery time.Duration
	sampling    sync.Once
	stop        chan struct{} // closed by Shutdown: the sampler ends
	stopOnce    sync.Once

	mu       sync.Mutex
	ln       net.Listener // what Serve serves
	stopping bool         // StopAccepting closed ln
}

// ErrUpgradeInProgress is what Options.Upgrade returns while an upgrade
// is already running.
var ErrUpgradeInProgress = errors.New("an upgrade is already in progress")

// New returns a server in the Starting state.
func New(o Options) *Server {
	s := &Server{o: o, hist: &history{g: o.Gatherer}, sampleEvery: o.SampleEvery, stop: make(chan struct{})}
	if s.sampleEvery <= 0 {
		s.sampleEvery = defaultSampleEvery
	}
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

// Handler serves /healthz, /status and /metrics behind two checks, after
// Caddy's admin endpoint.
//
// Trust model: the endpoint has no authentication and shows app
// directories, PIDs, ports and last errors; whoever can connect may read it.
// A web page the operator opens must not become such a client. DNS
// rebinding points a name the page's origin owns (evil.example) at
// 127.0.0.1, so the browser sends "Host: evil.example:9180": every request
// whose Host is not an IP address, localhost or one of Options.Hosts gets
// 403. An IP literal cannot be rebound, so those are safe to accept, and
// load balancers, Kubernetes probes and Prometheus scrape by IP. GET
// /healthz, /readyz and /livez are exempt: they say only "ok" or why not,
// and health checkers send any Host.
// Second, a request with a method other than GET, HEAD or OPTIONS that a
// browser marks as cross-origin (Sec-Fetch-Site, or an Origin whose host is
// not the Host) gets 403, so a page cannot make the operator's browser post
// to the endpoint; curl and loopgate's own commands send neither header.
func (s *Server) Handler() http.Handler {
	mux := s.routes()
	hosts := map[string]bool{"localhost": true}
	for _, h := range s.o.Hosts {
		hosts[canonicalHost(h)] = true
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			origin = "Sec-Fetch-Site: " + r.Header.Get("Sec-Fetch-Site")
		}
		s.o.Logger.Debug().Str("component", "admin").Str("method", r.Method).Str("path", r.URL.Path).
			Str("origin", origin).Msg("refused a cross-origin request")
		http.Error(w, fmt.Sprintf("cross-origin request refused: %s %s from %s; the admin endpoint takes "+
			"requests other than GET only from its own origin or from clients that are not browsers", r.Method, r.URL.Path, origin), http.StatusForbidden)
	}))
	checked := cop.Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !(r.Method == http.MethodGet && isProbe(r.URL.Path)) && !hostAllowed(r.Host, hosts) {
			s.o.Logger.Debug().Str("component", "admin").Str("host", r.Host).Str("path", r.URL.Path).
				Str("client", r.RemoteAddr).Msg("refused a request for a host name not allowed (DNS rebinding?)")
			http.Error(w, fmt.Sprintf("host not allowed: %q; the admin endpoint answers only to IP addresses, "+
				"localhost and the names given with --admin-host (DNS rebinding protection)", r.Host), http.StatusForbidden)
			return
		}
		checked.ServeHTTP(w, r)
	})
}

// isProbe reports whether path is one of the health endpoints.
func isProbe(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/livez"
}

// hostAllowed reports whether a request's Host header (host[:port]) names
// an IP address, localhost or one of names. An empty Host (HTTP/1.0) is
// accepted: browsers always send one.
func hostAllowed(hostport string, names map[string]bool) bool {
	if hostport == "" {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return names[canonicalHost(host)]
}

// canonicalHost lowers a host name and drops a trailing dot.
func canonicalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /livez", s.livez)
	if s.o.Snapshot != nil {
		mux.HandleFunc("GET /status", s.status)
	}
	if s.o.Upgrade != nil {
		mux.HandleFunc("POST /upgrade", s.upgrade)
	}
	if s.o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      promLogger{s.o.Logger},
			ErrorHandling: promhttp.ContinueOnError,
		}))
	}
	mux.HandleFunc("GET /{$}", s.page)
	return mux
}

// CheckHost says what is wrong with a name given for Options.Hosts, or nil.
func CheckHost(h string) error {
	if h == "" || strings.ContainsAny(h, ":/ []@") {
		return fmt.Errorf("want a host name such as loopgate.internal, without a port (IP addresses are always accepted)")
	}
	return nil
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

// readyz is the readiness probe: 200 "ok" while loopgate serves and no app
// holds readiness back (Options.Ready), else 503 with the reasons, one a
// line: "starting", "draining" (from the first moment of a SIGTERM, through
// --shutdown-delay and the drain), or what Ready says. An orchestrator stops
// sending traffic to a pod that is not ready, and a rollout whose new pods
// never get ready stops instead of replacing good pods.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h := s.Health(); h != Serving {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, h)
		return
	}
	if s.o.Ready != nil {
		if ok, why := s.o.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, line := range why {
				fmt.Fprintln(w, line)
			}
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// livez is the liveness probe: 200 "ok" whenever loopgate answers, whatever
// its apps do and also while it starts or drains, so a liveness check never
// restarts loopgate because an app is broken or cuts a drain short.
func (s *Server) livez(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
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

// upgrade is POST /upgrade: Options.Upgrade, answered when it is done.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	res, err := s.o.Upgrade(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrUpgradeInProgress) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	body, err := json.Marshal(res)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
}

// Serve serves on ln until Shutdown or StopAccepting, and samples the
// metrics for the status page's chart meanwhile. It returns nil after
// either.
func (s *Server) Serve(ln net.Listener) error {
	s.sampling.Do(func() { go s.hist.run(s.sampleEvery, s.stop) })
	s.mu.Lock()
	s.ln = ln
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		return nil
	}
	err := s.srv.Serve(ln)
	s.mu.Lock()
	stopping = s.stopping
	s.mu.Unlock()
	if stopping {
		return nil
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

// StopAccepting closes the listener Serve serves, at once: from its return
// on no new connection reaches this server (after a binary upgrade the new
// loopgate, which shares the listening socket, takes them all), while the
// open ones are served until Shutdown.
func (s *Server) StopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	// Keep-alive connections would keep reaching this server: idle ones
	// are closed now, busy ones after their answer.
	s.srv.SetKeepAlivesEnabled(false)
}

// Shutdown stops the server, letting requests in progress finish until ctx
// is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	return s.srv.Shutdown(ctx)
}

// promLogger passes promhttp's errors (a collector that failed) to zerolog.
type promLogger struct{ log zerolog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error().Msg(fmt.Sprint(v...))
}
