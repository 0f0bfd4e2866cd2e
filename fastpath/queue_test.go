package fastpath

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// TestQueueLength: with every backend connection busy, queueLength
// requests wait for one; the next gets 503 with Retry-After and HTTP.sys's
// page at once, and the waiting ones are served once the backend answers.
func TestQueueLength(t *testing.T) {
	h := newHarness(t, Config{MaxConnsPerBackend: 1, BackendQueueTimeout: 20 * time.Second}, "/")
	h.setSpec("/", func(s *configload.AppSpec) { s.QueueLength = 10 })
	release := make(chan struct{})
	arrived := make(chan struct{}, 100)
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			arrived <- struct{}{}
			select {
			case <-release:
			case <-time.After(20 * time.Second):
				return
			}
			if _, err := io.WriteString(c, okResponse); err != nil {
				return
			}
		}
	})
	h.backend("/", addr)
	rt := h.srv.router.routes[0]

	c := h.client()
	type result struct {
		code int
		err  error
	}
	results := make(chan result, 11)
	var wg sync.WaitGroup
	send := func() {
		defer wg.Done()
		resp, err := c.Get(h.url("/"))
		if err != nil {
			results <- result{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		results <- result{code: resp.StatusCode}
	}
	wg.Add(1)
	go send() // takes the one connection
	recv(t, arrived)
	for range 10 {
		wg.Add(1)
		go send()
	}
	waitFor(t, func() bool { return rt.queue.waiting.Load() == 10 }, "10 requests waiting for the connection")

	began := time.Now()
	resp, err := c.Get(h.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(began); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" ||
		!bytes.Equal(body, pageServiceUnavailable) || took > 2*time.Second {
		t.Errorf("the 11th waiting request: %d, Retry-After %q, after %v, body %q", resp.StatusCode, resp.Header.Get("Retry-After"), took, body)
	}
	if n := rt.queue.waiting.Load(); n != 10 {
		t.Errorf("%d waiting after the refusal, want 10", n)
	}
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil || r.code != 200 {
			t.Errorf("a queued request: %d %v", r.code, r.err)
		}
	}
	if n := rt.queue.waiting.Load(); n != 0 {
		t.Errorf("%d still counted as waiting", n)
	}
}
