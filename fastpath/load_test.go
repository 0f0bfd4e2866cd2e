package fastpath

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// AppLoad counts per app: requests in flight and the connections open and
// busy over the app's processes' pools, and forgets a retired process once
// its connections are gone.
func TestAppLoad(t *testing.T) {
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	hold := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	})
	h := newHarness(t, Config{}, "/", "/api")
	var ups []*upstream
	for range 2 { // two processes of "/"
		be := httptest.NewServer(hold)
		t.Cleanup(be.Close)
		ups = append(ups, h.backend("/", be.Listener.Addr().String()).up)
	}
	api := httptest.NewServer(hold)
	t.Cleanup(api.Close)
	h.backend("/api", api.Listener.Addr().String())

	want := func(app string, w AppLoad) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			got, ok := h.srv.AppLoad(app)
			if ok && got == w {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("AppLoad(%q) = %+v, %v; want %+v", app, got, ok, w)
			}
		}
	}
	want("/", AppLoad{})
	if l, ok := h.srv.AppLoad("/nope"); ok {
		t.Errorf("AppLoad of an unknown app = %+v, true", l)
	}

	c := h.client()
	done := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := c.Get(h.url("/hold"))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
	}
	recv(t, entered)
	recv(t, entered)
	// One request on each process: two connections, both busy.
	want("/", AppLoad{InFlight: 2, UpstreamOpen: 2, UpstreamBusy: 2})
	want("/api", AppLoad{})
	resp, err := c.Get(h.url("/api/x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("GET /api/x: %d %q", resp.StatusCode, body)
	}
	want("/api", AppLoad{UpstreamOpen: 1})

	close(release)
	for range 2 {
		if err := recv(t, done); err != nil {
			t.Fatal(err)
		}
	}
	// Kept alive in the pools, idle.
	want("/", AppLoad{UpstreamOpen: 2})

	if n := testing.AllocsPerRun(100, func() { h.srv.AppLoad("/") }); n != 0 {
		t.Errorf("AppLoad allocates %v times per call", n)
	}

	// Retiring a process closes its idle connections; its pool is then
	// forgotten.
	ups[0].Close()
	want("/", AppLoad{UpstreamOpen: 1})
	rt := h.srv.router.match([]byte("/"))
	rt.upsMu.Lock()
	n := len(rt.ups)
	rt.upsMu.Unlock()
	if n != 1 {
		t.Errorf("after retiring one of two processes the app tracks %d pools, want 1", n)
	}
}
