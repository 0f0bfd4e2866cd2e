package status

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func sample() Snapshot {
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return Snapshot{
		Version: "v1.2.3", Started: started, UptimeSeconds: 3*3600 + 4*60 + 5,
		Listeners:    []Listener{{Addr: "127.0.0.1:8080"}, {Addr: "[::]:8443", TLS: true}},
		Acceleration: Accel{Mode: "auto", Reason: "kernel lacks BPF_PROG_TYPE_SOCK_OPS"},
		Apps: []App{
			{Name: "/", VirtualPath: "/", Dir: "/srv/hello", State: "ready", Starts: 2, Crashes: 1, Restarts: 1,
				Processes: []Process{{Slot: 0, PID: 4242, Port: 40001, State: "ready", Started: started, UptimeSeconds: 75, Restarts: 1, Requests: 17, LastExit: "signal: killed"}}},
			{Name: "/api", VirtualPath: "/api", Dir: "/srv/api", State: "idle",
				ConfigError:    `/srv/api/web.config:7: startupTimeLimit="4000": out of range 0-3600`,
				LastStartError: "exit status 1: the process exited before listening on ASPNETCORE_PORT 28092\nsecond line",
				Processes:      []Process{{Slot: 0, State: "idle"}}},
		},
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := WriteTable(&b, sample()); err != nil {
		t.Fatal(err)
	}
	want := `loopgate v1.2.3, up 3h4m, serving
listening: http://127.0.0.1:8080, https://[::]:8443
acceleration: off (auto): kernel lacks BPF_PROG_TYPE_SOCK_OPS

APP   STATE  DIR         STARTS  CRASHES  RESTARTS  RECYCLES  RAPID-FAIL BLOCKS
/     ready  /srv/hello  2       1        1         0         0
/api  idle   /srv/api    0       0        0         0         0

APP   SLOT  PID   PORT   STATE  UPTIME  RESTARTS  REQUESTS  LAST EXIT
/     0     4242  40001  ready  1m15s   1         17        signal: killed
/api  0     -     -      idle   -       0         0         start failed: exit status 1: the process exited before listening on…

/api: configuration error (previous configuration still running):
  /srv/api/web.config:7: startupTimeLimit="4000": out of range 0-3600

/api: last start failure:
  exit status 1: the process exited before listening on ASPNETCORE_PORT 28092
  second line
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteTableAcceleratedAndDraining(t *testing.T) {
	s := sample()
	s.Draining = true
	s.Acceleration = Accel{Mode: "on", Active: true, Redirected: 10, Passed: 2, Fallbacks: 1}
	var b strings.Builder
	WriteTable(&b, s)
	for _, want := range []string{", draining\n", "acceleration: eBPF sockmap (on), 10 messages redirected, 2 passed, 1 connections fell back to TCP\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDuration(t *testing.T) {
	for sec, want := range map[float64]string{0: "0s", 44.6: "45s", 725: "12m5s", 3*3600 + 240: "3h4m", 2*86400 + 5*3600 + 59: "2d5h"} {
		if got := Duration(sec); got != want {
			t.Errorf("Duration(%v) = %q, want %q", sec, got, want)
		}
	}
}

// The JSON field names are a wire format scripts depend on.
func TestJSONFieldNames(t *testing.T) {
	raw, err := json.Marshal(sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version":"v1.2.3"`, `"uptime_seconds":11045`, `"listeners":[{"addr":"127.0.0.1:8080","tls":false}`,
		`"acceleration":{"mode":"auto","active":false,"reason":"kernel lacks BPF_PROG_TYPE_SOCK_OPS","redirected":0,"passed":0,"fallbacks":0,"released":0}`,
		`"virtual_path":"/api"`, `"config_error":"/srv/api/web.config:7:`, `"pid":4242`, `"last_exit":"signal: killed"`,
		`"requests":17`, `"last_start_error":"exit status 1`, `"rapid_fail_blocks":0`, `"config_reloads_failed":0`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("JSON lacks %s:\n%s", want, raw)
		}
	}
	if strings.Count(string(raw), `"started"`) != 2 { // the snapshot and the running process; not the idle slot
		t.Errorf("an idle slot must not carry a zero start time:\n%s", raw)
	}
}

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9180":         "http://127.0.0.1:9180/status",
		":9180":                  "http://127.0.0.1:9180/status",
		"0.0.0.0:9180":           "http://127.0.0.1:9180/status",
		"[::1]:9180":             "http://[::1]:9180/status",
		"http://edge-1:9180/":    "http://edge-1:9180/status",
		"https://edge-1.example": "https://edge-1.example/status",
	} {
		if got, err := URL(in); err != nil || got != want {
			t.Errorf("URL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := URL("localhost"); err == nil || !strings.Contains(err.Error(), `"localhost"`) {
		t.Errorf("URL without port: %v", err)
	}
}

func TestFetch(t *testing.T) {
	want := sample()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(want)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, raw, err := Fetch(ctx, strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Apps[0].Processes[0].PID != 4242 || got.Apps[1].ConfigError == "" || !got.Started.Equal(want.Started) {
		t.Errorf("decoded %+v", got)
	}
	if !json.Valid(raw) || !strings.Contains(string(raw), `"pid":4242`) {
		t.Errorf("raw %s", raw)
	}
}

func TestFetchUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = Fetch(ctx, addr)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("err = %v, want ErrUnreachable naming %s", err, addr)
	}
}

func TestFetchNotOK(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := Fetch(ctx, srv.URL); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v, want one naming the 404", err)
	}
}

// TestWriteTableUsage: CPU and MEMORY columns appear when any app has its
// usage (cgroup containment), with a dash for one that has none, and the
// usage has stable JSON names.
func TestWriteTableUsage(t *testing.T) {
	s := sample()
	s.Apps[0].Usage = &Usage{CPUSeconds: 1.25, MemoryBytes: 12 << 20}
	var b strings.Builder
	WriteTable(&b, s)
	for _, want := range []string{"RAPID-FAIL BLOCKS  CPU   MEMORY\n", "0                  1.2s  12.0 MiB\n", "0                  -     -\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	raw, _ := json.Marshal(s)
	if !strings.Contains(string(raw), `"usage":{"cpu_seconds":1.25,"memory_bytes":12582912}`) || strings.Count(string(raw), `"usage"`) != 1 {
		t.Errorf("usage JSON:\n%s", raw)
	}
}

// The app pool lines: why an app holds readiness back, and its recycles
// by reason (those that happened), below the tables.
func TestWriteTablePoolLines(t *testing.T) {
	s := sample()
	s.Apps = s.Apps[:1]
	s.Apps[0].Recycles = 4
	s.Apps[0].RecyclesByReason = map[string]uint64{"requests": 3, "config": 1, "ping": 0}
	s.Apps[0].NotReady = "startMode AlwaysRunning: no process ready yet"
	var b strings.Builder
	if err := WriteTable(&b, s); err != nil {
		t.Fatal(err)
	}
	want := "\n/: not ready: startMode AlwaysRunning: no process ready yet\n\n/: recycles by reason: config 1, requests 3\n"
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("table:\n%s\nwant it to end with:\n%s", got, want)
	}
	raw, _ := json.Marshal(s)
	for _, want := range []string{`"not_ready":"startMode AlwaysRunning: no process ready yet"`, `"recycles_by_reason":{"config":1,"ping":0,"requests":3}`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("JSON lacks %s:\n%s", want, raw)
		}
	}
}
