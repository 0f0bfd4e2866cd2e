package admin

import (
	"context"
	"encoding/json"
	"errors"
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

// TestReadyzAndLivez: /readyz follows the health state and then the apps
// (Options.Ready); /livez is 200 whatever the health and the apps say.
func TestReadyzAndLivez(t *testing.T) {
	appsOK := true
	s, base := start(t, Options{Ready: func() (bool, []string) {
		if appsOK {
			return true, nil
		}
		return false, []string{"app /api: crashloop"}
	}})
	for _, step := range []struct {
		set    Health
		appsOK bool
		code   int
		body   string
	}{
		{Starting, true, 503, "starting\n"},
		{Serving, true, 200, "ok\n"},
		{Serving, false, 503, "app /api: crashloop\n"},
		{Serving, true, 200, "ok\n"},
		{Draining, true, 503, "draining\n"},
	} {
		s.SetHealth(step.set)
		appsOK = step.appsOK
		code, body, h := get(t, base+"/readyz")
		if code != step.code || body != step.body || h.Get("Cache-Control") != "no-store" {
			t.Errorf("/readyz after SetHealth(%v), apps ok %v: %d %q, want %d %q", step.set, step.appsOK, code, body, step.code, step.body)
		}
		if code, body, _ := get(t, base+"/livez"); code != 200 || body != "ok\n" {
			t.Errorf("/livez after SetHealth(%v), apps ok %v: %d %q, want 200 ok", step.set, step.appsOK, code, body)
		}
		// /healthz keeps its meaning: loopgate's own state, not the apps'.
		if code, _, _ := get(t, base+"/healthz"); (code == 200) != (step.set == Serving) {
			t.Errorf("/healthz after SetHealth(%v), apps ok %v: %d", step.set, step.appsOK, code)
		}
	}
}

// TestUpgradeEndpoint: POST /upgrade answers Options.Upgrade's result as
// JSON, its error as text (409 for one in progress), refuses GET and
// cross-origin posts, and StopAccepting turns new connections away while
// Serve returns nil.
func TestUpgradeEndpoint(t *testing.T) {
	var fail error
	s, base := start(t, Options{Upgrade: func(context.Context) (any, error) {
		if fail != nil {
			return nil, fail
		}
		return map[string]int{"new_pid": 42}, nil
	}})
	post := func(h map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/upgrade", nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(nil); code != 200 || body != "{\"new_pid\":42}\n" {
		t.Errorf("POST /upgrade: %d %q", code, body)
	}
	fail = errors.New("upgrade failed, still serving: child exited")
	if code, body := post(nil); code != 500 || body != "upgrade failed, still serving: child exited\n" {
		t.Errorf("POST /upgrade failing: %d %q", code, body)
	}
	fail = ErrUpgradeInProgress
	if code, _ := post(nil); code != 409 {
		t.Errorf("POST /upgrade while one runs: %d, want 409", code)
	}
	if code, _ := post(map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST /upgrade: %d, want 403", code)
	}
	if code, _, _ := get(t, base+"/upgrade"); code != 405 {
		t.Errorf("GET /upgrade: %d, want 405", code)
	}
	s.StopAccepting()
	client.CloseIdleConnections()
	if _, err := client.Get(base + "/livez"); err == nil {
		t.Error("a new connection was served after StopAccepting")
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

// TestDNSRebindingAndCrossOrigin: a page whose name was rebound to the
// admin address (Host: evil.example) reads nothing; IP addresses, localhost
// and configured names are served; a browser's cross-origin POST is refused
// before it reaches a handler, while curl's (no Origin) and a same-origin
// one get through (to 405 here: no route takes POST yet).
func TestDNSRebindingAndCrossOrigin(t *testing.T) {
	snap := status.Snapshot{Version: "v1"}
	s, base := start(t, Options{Snapshot: func() status.Snapshot { return snap }, Hosts: []string{"Loopgate.Internal."}})
	s.SetHealth(Serving)
	cases := []struct {
		method, path, host string
		header             map[string]string
		code               int
		body               string // a substring of the answer
	}{
		{"GET", "/status", "127.0.0.1:9180", nil, 200, `"version": "v1"`},
		{"GET", "/status", "[::1]:9180", nil, 200, `"version": "v1"`},
		{"GET", "/status", "10.1.2.3:9180", nil, 200, `"version": "v1"`}, // a probe by pod IP
		{"GET", "/status", "localhost:9180", nil, 200, `"version": "v1"`},
		{"GET", "/status", "LOCALHOST.", nil, 200, `"version": "v1"`},
		{"GET", "/status", "loopgate.internal:9180", nil, 200, `"version": "v1"`},
		{"GET", "/status", "evil.example:9180", nil, 403,
			`host not allowed: "evil.example:9180"; the admin endpoint answers only to IP addresses, localhost and the names given with --admin-host (DNS rebinding protection)`},
		{"GET", "/metrics", "evil.example", nil, 403, "host not allowed"},
		{"GET", "/", "127.0.0.1.evil.example", nil, 403, "host not allowed"},
		{"GET", "/", "localhost.evil.example:9180", nil, 403, "host not allowed"},
		{"HEAD", "/healthz", "evil.example", nil, 403, ""},
		// Health checkers send any Host; /healthz says only "ok".
		{"GET", "/healthz", "lb-health.example", nil, 200, "ok"},
		{"GET", "/readyz", "10-1-2-3.pod.example", nil, 200, "ok"},
		{"GET", "/livez", "10-1-2-3.pod.example", nil, 200, "ok"},
		{"POST", "/status", "127.0.0.1:9180", map[string]string{"Origin": "http://evil.example"}, 403,
			"cross-origin request refused: POST /status from http://evil.example; the admin endpoint takes requests other than GET only from its own origin or from clients that are not browsers"},
		{"POST", "/status", "127.0.0.1:9180", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, "cross-origin request refused"},
		{"DELETE", "/status", "localhost:9180", map[string]string{"Origin": "http://localhost:8080"}, 403, "cross-origin request refused"},
		{"POST", "/status", "127.0.0.1:9180", map[string]string{"Origin": "http://127.0.0.1:9180"}, 405, ""},
		{"POST", "/status", "127.0.0.1:9180", nil, 405, ""},
		// A cross-origin GET is harmless: the browser does not let the page read it.
		{"GET", "/status", "127.0.0.1:9180", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 200, `"version"`},
	}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, base+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s Host %s: %v", c.method, c.path, c.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(string(body), c.body) {
			t.Errorf("%s %s Host %q %v: %d %q, want %d with %q", c.method, c.path, c.host, c.header, resp.StatusCode, body, c.code, c.body)
		}
	}
}

func TestCheckHost(t *testing.T) {
	for _, h := range []string{"loopgate.internal", "loopgate", "metrics.svc.cluster.local"} {
		if err := CheckHost(h); err != nil {
			t.Errorf("CheckHost(%q): %v", h, err)
		}
	}
	for _, h := range []string{"", "host:9180", "http://host", "[::1]", "a b"} {
		if err := CheckHost(h); err == nil {
			t.Errorf("CheckHost(%q) accepted", h)
		}
	}
}
