package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/status"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func snapshot() status.Snapshot {
	return status.Snapshot{
		Draining:     true,
		Acceleration: status.Accel{Mode: "auto", Active: true, Redirected: 7, Passed: 3, Fallbacks: 2},
		Apps: []status.App{
			{Name: "/", Starts: 3, Crashes: 2, Restarts: 2, RapidFailBlocks: 1, Recycles: 4, RecyclesByReason: map[string]uint64{"config": 1, "requests": 3, "ping": 0}, ConfigReloadsOK: 5, ConfigReloadsFailed: 6,
				Offline: true, ConfigError: "web.config:1: broken", Usage: &status.Usage{CPUSeconds: 2.5, MemoryBytes: 4096},
				Processes: []status.Process{{State: "ready", PID: 10}, {State: "ready", PID: 11}, {State: "starting"}}},
			{Name: "/api", Processes: []status.Process{{State: "idle"}}},
		},
	}
}

func newTest() *Metrics {
	return New(Options{
		Version:  "v9",
		Apps:     []string{"/", "/api"},
		Snapshot: snapshot,
		Front:    func() (int64, int) { return 4, 9 },
		AppLoad: func(app string) (int64, int, int, int) {
			if app == "/" {
				return 3, 5, 2, 0
			}
			return 5, 1, 0, 3 // an h2c app: 3 requests on streams
		},
	})
}

// value finds one sample by name and labels in what the registry gathers.
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			return sampleValue(m), true
		}
	}
	return 0, false
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func TestNamesPassPromlint(t *testing.T) {
	m := newTest()
	m.Observe(0, "GET", 200, time.Millisecond)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestRequestMetrics(t *testing.T) {
	m := newTest()
	reg := m.Registry()
	m.Observe(0, "GET", 204, 3*time.Millisecond)
	m.Observe(0, "BREW", 418, time.Second)
	m.Observe(0, "OTHER", 0, time.Second)
	m.Observe(1, "POST", 502, time.Millisecond)
	m.Observe(2, "GET", 400, 0)  // len(Apps): no app
	m.Observe(-1, "GET", 431, 0) // out of range: no app too

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"loopgate_requests_total", map[string]string{"app": "/", "method": "GET", "code": "2xx"}, 1},
		{"loopgate_requests_total", map[string]string{"app": "/", "method": "other", "code": "4xx"}, 1},
		{"loopgate_requests_total", map[string]string{"app": "/", "method": "other", "code": "reset"}, 1},
		{"loopgate_requests_total", map[string]string{"app": "/api", "method": "POST", "code": "5xx"}, 1},
		{"loopgate_requests_total", map[string]string{"app": "/api", "method": "GET", "code": "2xx"}, 0},
		{"loopgate_requests_total", map[string]string{"app": "none", "method": "GET", "code": "4xx"}, 2},
		{"loopgate_request_duration_seconds", map[string]string{"app": "/"}, 3},
		{"loopgate_request_duration_seconds", map[string]string{"app": "none"}, 2},
	} {
		got, ok := value(t, reg, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}

func TestSnapshotMetrics(t *testing.T) {
	reg := newTest().Registry()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"loopgate_backend_starts_total", map[string]string{"app": "/"}, 3},
		{"loopgate_app_memory_bytes", map[string]string{"app": "/"}, 4096},
		{"loopgate_app_cpu_seconds_total", map[string]string{"app": "/"}, 2.5},
		{"loopgate_backend_crashes_total", map[string]string{"app": "/"}, 2},
		{"loopgate_backend_restarts_total", map[string]string{"app": "/"}, 2},
		{"loopgate_rapid_fail_blocks_total", map[string]string{"app": "/"}, 1},
		{"loopgate_app_recycles_total", map[string]string{"app": "/", "reason": "config"}, 1},
		{"loopgate_app_recycles_total", map[string]string{"app": "/", "reason": "requests"}, 3},
		{"loopgate_app_recycles_total", map[string]string{"app": "/", "reason": "ping"}, 0},
		{"loopgate_config_reloads_total", map[string]string{"app": "/", "result": "ok"}, 5},
		{"loopgate_config_reloads_total", map[string]string{"app": "/", "result": "failed"}, 6},
		{"loopgate_app_config_error", map[string]string{"app": "/"}, 1},
		{"loopgate_app_config_error", map[string]string{"app": "/api"}, 0},
		{"loopgate_app_offline", map[string]string{"app": "/"}, 1},
		{"loopgate_app_offline", map[string]string{"app": "/api"}, 0},
		{"loopgate_backend_processes", map[string]string{"app": "/", "state": "ready"}, 2},
		{"loopgate_backend_processes", map[string]string{"app": "/", "state": "starting"}, 1},
		{"loopgate_backend_processes", map[string]string{"app": "/", "state": "crashloop"}, 0},
		{"loopgate_backend_processes", map[string]string{"app": "/api", "state": "idle"}, 1},
		{"loopgate_requests_in_flight", nil, 4},
		{"loopgate_client_connections", nil, 9},
		{"loopgate_app_requests_in_flight", map[string]string{"app": "/"}, 3},
		{"loopgate_app_requests_in_flight", map[string]string{"app": "/api"}, 5},
		{"loopgate_app_requests_queued", map[string]string{"app": "/"}, 1},    // 3 in flight, 2 on a backend connection
		{"loopgate_app_requests_queued", map[string]string{"app": "/api"}, 2}, // 5 in flight, 3 on an h2c stream
		{"loopgate_upstream_connections", map[string]string{"app": "/", "state": "busy"}, 2},
		{"loopgate_upstream_connections", map[string]string{"app": "/", "state": "idle"}, 3},
		{"loopgate_upstream_connections", map[string]string{"app": "/api", "state": "busy"}, 0},
		{"loopgate_upstream_connections", map[string]string{"app": "/api", "state": "idle"}, 1},
		{"loopgate_sockmap_messages_total", map[string]string{"verdict": "redirect"}, 7},
		{"loopgate_sockmap_messages_total", map[string]string{"verdict": "pass"}, 3},
		{"loopgate_sockmap_fallbacks_total", nil, 2},
		{"loopgate_acceleration_active", nil, 1},
		{"loopgate_draining", nil, 1},
		{"loopgate_build_info", map[string]string{"version": "v9"}, 1},
	} {
		got, ok := value(t, reg, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// Scrapes never carry PIDs, ports or paths as labels.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if n := lp.GetName(); strings.Contains(n, "pid") || strings.Contains(n, "port") || n == "path" {
					t.Errorf("%s has unbounded label %s", mf.GetName(), n)
				}
			}
		}
	}
}

func TestRecordingAllocatesNothing(t *testing.T) {
	m := newTest()
	allocs := testing.AllocsPerRun(1000, func() {
		m.Observe(1, "DELETE", 404, 1500*time.Microsecond)
		m.Observe(5, "PROPFIND", 0, time.Millisecond)
	})
	if allocs != 0 {
		t.Errorf("recording a request allocates %v times", allocs)
	}
}

func TestClasses(t *testing.T) {
	for code, want := range map[int]string{0: "reset", 99: "other", 100: "1xx", 200: "2xx", 308: "3xx", 499: "4xx", 599: "5xx", 600: "other"} {
		if got := statusClasses[statusClass(code)]; got != want {
			t.Errorf("statusClass(%d) = %s, want %s", code, got, want)
		}
	}
	for method, want := range map[string]string{"GET": "GET", "get": "other", "OPTIONS": "OPTIONS", "PROPFIND": "other", "": "other"} {
		if got := methodClasses[methodClass(method)]; got != want {
			t.Errorf("methodClass(%q) = %s, want %s", method, got, want)
		}
	}
}

func BenchmarkObserve(b *testing.B) {
	m := New(Options{Apps: []string{"/"}})
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(0, "GET", 200, time.Millisecond)
	}
}
