package fastpath

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// TestH2CStreamQueue: a request to an h2c app that finds no free stream
// (every connection at the app's SETTINGS_MAX_CONCURRENT_STREAMS) waits as
// one to an HTTP/1.1 app waits for a connection: counted against
// queueLength (past it 503 with Retry-After at once), bounded by
// --backend-queue-timeout (then 503, not 502.3 after requestTimeout), and
// served when a stream comes free.
func TestH2CStreamQueue(t *testing.T) {
	const queueTimeout = 3 * time.Second
	h := newTLSHarness(t, Config{BackendQueueTimeout: queueTimeout})
	h.setSpec(func(s *configload.AppSpec) { s.QueueLength = 2 })
	release := make(chan struct{})
	var inApp atomic.Int32
	bs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inApp.Add(1)
		defer inApp.Add(-1)
		if r.URL.Path == "/hold" {
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		_, _ = io.WriteString(w, "ok")
	}))
	bs.Config.Protocols = new(http.Protocols)
	bs.Config.Protocols.SetUnencryptedHTTP2(true)
	bs.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1}
	bs.Start()
	t.Cleanup(bs.Close)
	addr := strings.TrimPrefix(bs.URL, "http://")
	up := newUpstream(addr, &h.srv.cfg)
	t.Cleanup(up.Close)
	h.app.addBackend(&fakeBackend{addr: addr, token: "h2c-token", pid: 78, up: up})
	h.setSpec(func(s *configload.AppSpec) { s.BackendProtocol = configload.BackendH2C })
	rt := h.srv.router.routes[0]
	c := h.client(false)

	type result struct {
		code       int
		retryAfter string
		took       time.Duration
		err        error
	}
	get := func(path string, out chan<- result) {
		start := time.Now()
		resp, err := c.Get(h.url(path))
		if err != nil {
			out <- result{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out <- result{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), took: time.Since(start)}
	}
	held := make(chan result, 4)
	// One stream on each connection, one after the other: a connection
	// knows the app's stream limit once its SETTINGS arrived.
	for i := range h2cMaxConns {
		go get("/hold", held)
		waitFor(t, func() bool { return inApp.Load() == int32(i+1) }, "a stream of the app taken")
	}

	waiting := make(chan result, 2)
	for range 2 {
		go get("/x", waiting)
	}
	waitFor(t, func() bool { return rt.queue.waiting.Load() == 2 }, "queueLength requests waiting for a stream")
	// The metrics see the streams as busy, the two as queued.
	if l, _ := h.srv.AppLoad(rt.name); l.Streams != h2cMaxConns || l.InFlight-int64(l.UpstreamBusy+l.Streams) != 2 {
		t.Errorf("app load %+v: want %d streams and 2 requests queued", l, h2cMaxConns)
	}
	full := make(chan result, 1)
	get("/x", full)
	if r := <-full; r.code != 503 || r.retryAfter != "1" {
		t.Errorf("with queueLength requests waiting for a stream: %+v, want 503 with Retry-After: 1", r)
	}
	for range 2 {
		r := <-waiting
		if r.code != 503 || r.took < queueTimeout-500*time.Millisecond {
			t.Errorf("a request waiting for a stream: %+v, want 503 after --backend-queue-timeout %v", r, queueTimeout)
		}
	}
	if n := rt.queue.waiting.Load(); n != 0 {
		t.Errorf("%d requests still counted as waiting", n)
	}

	// A stream that comes free is taken by the request waiting for it.
	served := make(chan result, 1)
	go get("/x", served)
	waitFor(t, func() bool { return rt.queue.waiting.Load() == 1 }, "a request waiting for a stream")
	close(release)
	if r := <-served; r.code != 200 {
		t.Errorf("the waiting request once streams came free: %+v", r)
	}
	for range h2cMaxConns {
		if r := <-held; r.code != 200 {
			t.Errorf("a request that held a stream: %+v", r)
		}
	}
	waitFor(t, func() bool { l, _ := h.srv.AppLoad(rt.name); return l.Streams == 0 && l.InFlight == 0 }, "no stream counted once all are done")
}
