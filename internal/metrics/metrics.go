package metrics

import (
	"time"

	"github.com/loopgate/loopgate/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Method classes: the common methods by name, everything else as "other",
// so a client inventing methods cannot grow the label set.
var methodClasses = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}

// methodClass maps a request method (or an already classified method name)
// to its index in methodClasses. The switch does not allocate.
func methodClass(method string) int {
	switch method {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	}
	return 7
}

// Status classes: 1xx to 5xx, "reset" for a connection closed before a
// status line was sent (code 0), "other" for anything else.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "reset", "other"}

func statusClass(code int) int {
	switch {
	case code == 0:
		return 5
	case code < 100 || code > 599:
		return 6
	}
	return code/100 - 1
}

// NoApp is the app label of requests that matched no app or were refused
// before routing (400, 408, 431). App names are virtual paths and start
// with "/", so it cannot clash with one.
const NoApp = "none"

// DurationBuckets are the request duration histogram's upper bounds in
// seconds: fine-grained under 10 ms, where a proxy hop lives, up to a minute.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Options are where the scrape-time metrics come from.
type Options struct {
	// Version is reported by loopgate_build_info.
	Version string
	// Apps are the app names (virtual paths) in the supervisor's order; the
	// app index passed to Observe indexes this slice, and len(Apps) stands
	// for NoApp.
	Apps []string
	// Snapshot returns the current status. Called once per scrape; nil
	// means no supervisor or acceleration metrics.
	Snapshot func() status.Snapshot
	// Front reports the front server's requests in flight and open client
	// connections at scrape time. nil means those gauges are not exported.
	Front func() (inFlight int64, openConns int)
	// AppLoad reports one app's requests in flight, its upstream
	// connections to its backend processes, open and (of those) busy,
	// summed over the processes' pools, and the requests holding an h2c
	// stream (backendProtocol="h2c": they hold no connection of their
	// own). Called for each name in Apps at every scrape; nil means those
	// per-app gauges are not exported.
	AppLoad func(app string) (inFlight int64, open, busy, streams int)
}

// Metrics holds loopgate's metrics and the registry they are exposed from.
// Observe is safe for concurrent use and allocates nothing.
type Metrics struct {
	reg  *prometheus.Registry
	apps []appMetrics // one per app, then one for NoApp
}

type appMetrics struct {
	requests [len(methodClasses)][len(statusClasses)]prometheus.Counter
	duration prometheus.Observer
}

// New registers every metric on a fresh registry, together with the Go
// runtime and process collectors.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loopgate_requests_total",
		Help: "Requests answered, by app, method class and status class (reset: closed before a status line).",
	}, []string{"app", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "loopgate_request_duration_seconds",
		Help:    "Time from the first byte of a request to the end of its response, by app.",
		Buckets: DurationBuckets,
	}, []string{"app"})
	reg.MustRegister(requests, duration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&snapshotCollector{o: o})

	names := append(append([]string(nil), o.Apps...), NoApp)
	m := &Metrics{reg: reg, apps: make([]appMetrics, len(names))}
	for i, app := range names {
		a := &m.apps[i]
		for mi, mc := range methodClasses {
			for si, sc := range statusClasses {
				a.requests[mi][si] = requests.WithLabelValues(app, mc, sc)
			}
		}
		a.duration = duration.WithLabelValues(app)
	}
	return m
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe records an answered request: the app's index in Options.Apps
// (len(Apps) or any out-of-range index for NoApp), the method (any string;
// unknown ones count as "other"), the status code sent (0 for a reset) and
// how long it took.
func (m *Metrics) Observe(app int, method string, code int, d time.Duration) {
	if uint(app) >= uint(len(m.apps)) {
		app = len(m.apps) - 1
	}
	a := &m.apps[app]
	a.requests[methodClass(method)][statusClass(code)].Inc()
	a.duration.Observe(d.Seconds())
}
