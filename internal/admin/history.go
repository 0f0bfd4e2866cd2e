package admin

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The status page's numbers and chart come from the metrics registry, so the
// page shows exactly what /metrics says, and nothing on the request path
// does extra work for it.

const (
	// historySamples is how many samples the chart shows.
	historySamples = 120
	// defaultSampleEvery is the time between two samples: 120 of them are
	// the last 10 minutes.
	defaultSampleEvery = 5 * time.Second
)

// appLoad is one app's numbers read from the registry at one moment.
type appLoad struct {
	requests float64 // loopgate_requests_total summed over method and code
	inFlight float64 // loopgate_app_requests_in_flight
}

// sample is the registry read at one moment.
type sample struct {
	at   time.Time
	apps map[string]appLoad
}

// history keeps the last historySamples samples. Safe for concurrent use.
type history struct {
	g prometheus.Gatherer

	mu      sync.Mutex
	samples []sample // oldest first
}

// read gathers the registry now. A registry that fails is read as empty.
func (h *history) read(now time.Time) sample {
	s := sample{at: now, apps: map[string]appLoad{}}
	if h.g == nil {
		return s
	}
	mfs, err := h.g.Gather()
	if err != nil && len(mfs) == 0 {
		return s
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			app := label(m, "app")
			if app == "" {
				continue
			}
			l := s.apps[app]
			switch mf.GetName() {
			case "loopgate_requests_total":
				l.requests += m.GetCounter().GetValue()
			case "loopgate_app_requests_in_flight":
				l.inFlight = m.GetGauge().GetValue()
			default:
				continue
			}
			s.apps[app] = l
		}
	}
	return s
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// record takes a sample and keeps it.
func (h *history) record(now time.Time) {
	s := h.read(now)
	h.mu.Lock()
	h.samples = append(h.samples, s)
	if len(h.samples) > historySamples {
		h.samples = append(h.samples[:0], h.samples[len(h.samples)-historySamples:]...)
	}
	h.mu.Unlock()
}

// rates returns app's requests per second between consecutive samples,
// oldest first, and the last sample (the zero sample when none).
func (h *history) rates(app string) ([]float64, sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []float64
	for i := 1; i < len(h.samples); i++ {
		out = append(out, rate(h.samples[i-1], h.samples[i], app))
	}
	if len(h.samples) == 0 {
		return out, sample{}
	}
	return out, h.samples[len(h.samples)-1]
}

// rate is app's requests per second from a to b; 0 when the interval is
// empty or the counter went back (it never should).
func rate(a, b sample, app string) float64 {
	d := b.at.Sub(a.at).Seconds()
	n := b.apps[app].requests - a.apps[app].requests
	if d <= 0 || n < 0 {
		return 0
	}
	return n / d
}

// run samples every every until done is closed.
func (h *history) run(every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	h.record(time.Now())
	for {
		select {
		case now := <-t.C:
			h.record(now)
		case <-done:
			return
		}
	}
}
