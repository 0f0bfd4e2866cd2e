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

// methodClass maps a request method to its index in methodClasses.
// The switch on string(method) does not allocate.
func methodClass(method []byte) int {
	switch string(method) {
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

// Status classes: 1xx to 5xx, and "other" for anything outside 100-599.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 5
	}
	return code/100 - 1
}

// Verdicts for requests the supervisor could not give a backend to.
var verdicts = [...]string{"start_failed", "offline", "stopping"}

// Verdict says why a request was answered without reaching a backend.
type Verdict uint8

const (
	// StartFailed: the backend could not be started (502.5).
	StartFailed Verdict = iota
	// Offline: app_offline.htm is present (503 with its content).
	Offline
	// Stopping: the app or loopgate is stopping (bare 503).
	Stopping
)

// DurationBuckets are the request duration histogram's upper bounds in
// seconds: fine-grained under 10 ms, where a proxy hop lives, up to a minute.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Options are where the scrape-time metrics come from.
type Options struct {
	// Version is reported by loopgate_build_info.
	Version string
	// Apps are the app names (virtual paths) in the supervisor's order; the
	// app index passed to the recording methods indexes this slice.
	Apps []string
	// Snapshot returns the current status. Called once per scrape; nil
	// means no supervisor or acceleration metrics.
	Snapshot func() status.Snapshot
	// Pools reports upstream connection pool use per app (index as in Apps)
	// at scrape time: open connections and those busy with a request. nil
	// means the metric is not exported.
	Pools func(report func(app int, open, busy int))
}

// Metrics holds loopgate's metrics and the registry they are exposed from.
// The recording methods are safe for concurrent use and allocate nothing.
type Metrics struct {
	reg  *prometheus.Registry
	apps []appMetrics
}

type appMetrics struct {
	requests [len(methodClasses)][len(statusClasses)]prometheus.Counter
	rejected [len(verdicts)]prometheus.Counter
	duration prometheus.Observer
	inFlight prometheus.Gauge
}

// New registers every metric on a fresh registry, together with the Go
// runtime and process collectors.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loopgate_requests_total",
		Help: "Requests answered, by app, method class and status class.",
	}, []string{"app", "method", "code"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "loopgate_backend_unavailable_total",
		Help: "Requests answered without a backend, by app and verdict (start_failed: 502.5, offline: app_offline.htm, stopping: 503).",
	}, []string{"app", "verdict"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "loopgate_request_duration_seconds",
		Help:    "Time from the request being read to the response being written, by app.",
		Buckets: DurationBuckets,
	}, []string{"app"})
	inFlight := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "loopgate_requests_in_flight",
		Help: "Requests being handled now, by app.",
	}, []string{"app"})
	reg.MustRegister(requests, rejected, duration, inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&snapshotCollector{o: o})

	m := &Metrics{reg: reg, apps: make([]appMetrics, len(o.Apps))}
	for i, app := range o.Apps {
		a := &m.apps[i]
		for mi, mc := range methodClasses {
			for si, sc := range statusClasses {
				a.requests[mi][si] = requests.WithLabelValues(app, mc, sc)
			}
		}
		for vi, v := range verdicts {
			a.rejected[vi] = rejected.WithLabelValues(app, v)
		}
		a.duration = duration.WithLabelValues(app)
		a.inFlight = inFlight.WithLabelValues(app)
	}
	return m
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Begin counts a request routed to app as in flight; call Done when it is
// answered. Out-of-range app indexes are ignored (a request that matched no
// app).
func (m *Metrics) Begin(app int) {
	if uint(app) < uint(len(m.apps)) {
		m.apps[app].inFlight.Inc()
	}
}

// Done records an answered request: method as sent, the status code
// written and how long it took. It ends what Begin started.
func (m *Metrics) Done(app int, method []byte, code int, d time.Duration) {
	if uint(app) >= uint(len(m.apps)) {
		return
	}
	a := &m.apps[app]
	a.inFlight.Dec()
	a.requests[methodClass(method)][statusClass(code)].Inc()
	a.duration.Observe(d.Seconds())
}

// Unavailable records a request the supervisor gave no backend for.
func (m *Metrics) Unavailable(app int, v Verdict) {
	if uint(app) < uint(len(m.apps)) && int(v) < len(verdicts) {
		m.apps[app].rejected[v].Inc()
	}
}
