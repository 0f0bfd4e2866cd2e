package admin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/loopgate/loopgate/internal/status"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// start runs a Server on a kernel-picked loopback port.
func start(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	s := New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return s, "http://" + ln.Addr().String()
}

var client = &http.Client{Timeout: 5 * time.Second}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestHealthz(t *testing.T) {
	s, base := start(t, Options{})
	for _, step := range []struct {
		set  Health
		code int
		body string
	}{
		{Starting, 503, "starting\n"},
		{Serving, 200, "ok\n"},
		{Draining, 503, "draining\n"},
		{Serving, 503, "draining\n"}, // a drain is final
	} {
		s.SetHealth(step.set)
		code, body, _ := get(t, base+"/healthz")
		if code != step.code || body != step.body {
			t.Errorf("after SetHealth(%v): %d %q, want %d %q", step.set, code, body, step.code, step.body)
		}
	}
	if s.Health() != Draining {
		t.Errorf("Health() = %v", s.Health())
	}
}

func TestStatusJSON(t *testing.T) {
	snap := status.Snapshot{Version: "v1", Apps: []status.App{{Name: "/", VirtualPath: "/", Dir: "/srv/a", State: "ready",
		Processes: []status.Process{{PID: 77, Port: 4000, State: "ready", Requests: 5}}}}}
	_, base := start(t, Options{Snapshot: func() status.Snapshot { return snap }})
	code, body, h := get(t, base+"/status")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("/status: %d %s", code, h.Get("Content-Type"))
	}
	var got status.Snapshot
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/status is not the status document: %v\n%s", err, body)
	}
	if got.Version != "v1" || got.Apps[0].Processes[0].PID != 77 || got.Apps[0].Processes[0].Requests != 5 {
		t.Errorf("/status = %+v", got)
	}
}

// TestMetricsEndpointPassesPromlint lints what a Prometheus server would
// actually scrape, in the text format.
func TestMetricsEndpointPassesPromlint(t *testing.T) {
	m := metrics.New(metrics.Options{
		Version: "v1",
		Apps:    []string{"/", "/api"},
		Snapshot: func() status.Snapshot {
			return status.Snapshot{Acceleration: status.Accel{Active: true, Redirected: 1},
				Apps: []status.App{{Name: "/", Starts: 1, Processes: []status.Process{{State: "ready"}}}, {Name: "/api"}}}
		},
		Front: func() (int64, int) { return 2, 3 },
	})
	m.Observe(0, "GET", 200, time.Millisecond)
	_, base := start(t, Options{Gatherer: m.Registry()})
	code, body, h := get(t, base+"/metrics")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", code, h.Get("Content-Type"))
	}
	for _, want := range []string{
		`loopgate_requests_total{app="/",code="2xx",method="GET"} 1`,
		`loopgate_request_duration_seconds_count{app="/"} 1`,
		`loopgate_backend_starts_total{app="/"} 1`,
		`loopgate_requests_in_flight 2`,
		`loopgate_client_connections 3`,
		`loopgate_sockmap_messages_total{verdict="redirect"} 1`,
		`loopgate_build_info{version="v1"} 1`,
		`process_cpu_seconds_total`, `go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	_, base := start(t, Options{})
	if code, _, _ := get(t, base+"/status"); code != 404 {
		t.Errorf("/status without a snapshot source: %d, want 404", code)
	}
	if code, _, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope: %d, want 404", code)
	}
	if code, body, _ := get(t, base+"/"); code != 200 || !strings.Contains(body, "/healthz") {
		t.Errorf("/: %d %q", code, body)
	}
	resp, err := client.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", resp.StatusCode)
	}
}
