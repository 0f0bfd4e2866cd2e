package main

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/logsetup"
	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/rs/zerolog"
)

func requestInfo() fastpath.RequestInfo {
	return fastpath.RequestInfo{
		App: "/api", Method: fastpath.MethodPost, Status: 201, Duration: 1500 * time.Microsecond,
		BytesIn: 12, BytesOut: 34, PID: 4321, Retried: true,
		RawMethod: []byte("POST"), Target: []byte("/api/items?x=1"),
		RemoteAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5555},
	}
}

// The access log line has the documented, stable field names.
func TestAccessLogLine(t *testing.T) {
	var buf bytes.Buffer
	names := []string{"/", "/api"}
	o := newObserver(metrics.New(metrics.Options{Apps: names}), names, zerolog.New(&buf), true)
	o.ObserveRequest(requestInfo())
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	want := map[string]any{"level": "info", "event": "access", "method": "POST", "path": "/api/items?x=1", "status": 201.0,
		"bytes": 34.0, "bytes_in": 12.0, "duration_ms": 1.5, "app": "/api", "pid": 4321.0, "client": "192.0.2.7:5555", "retried": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, buf.String())
		}
	}
	if len(got) != len(want) {
		t.Errorf("line has fields %v, want exactly %v", got, want)
	}

	buf.Reset()
	off := newObserver(metrics.New(metrics.Options{Apps: names}), names, zerolog.New(&buf), false)
	off.ObserveRequest(requestInfo())
	if buf.Len() != 0 {
		t.Errorf("--access-log=false still logged %q", buf.String())
	}
}

// Observing a request (metrics and the access log line) allocates nothing.
func TestObserverAllocatesNothing(t *testing.T) {
	names := []string{"/", "/api"}
	// The logger serve builds: JSON with timestamps, through the sink.
	log, sink, err := logsetup.New(logsetup.Options{Stderr: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	o := newObserver(metrics.New(metrics.Options{Apps: names}), names, log, true)
	info := requestInfo()
	if n := testing.AllocsPerRun(1000, func() { o.ObserveRequest(info) }); n != 0 {
		t.Errorf("ObserveRequest allocates %v times per request", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkObserveRequest(b *testing.B) {
	names := []string{"/"}
	o := newObserver(metrics.New(metrics.Options{Apps: names}), names, zerolog.New(discard{}), true)
	info := requestInfo()
	info.App = "/"
	b.ReportAllocs()
	for b.Loop() {
		o.ObserveRequest(info)
	}
}
