package fastpath

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSockmap records what forwarding asks of the sockmap.
type fakeSockmap struct {
	mu       sync.Mutex
	released []netip.AddrPort // the remote (backend) end of each Release
	excluded int
}

func (f *fakeSockmap) QueueLimit() int { return 4 << 20 }

func (f *fakeSockmap) Release(_, remote netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.released = append(f.released, remote)
	return nil
}

func (f *fakeSockmap) Exclude(int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.excluded++
	return nil
}

func (f *fakeSockmap) counts() (released, excluded int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.released), f.excluded
}

// TestSockmapBulkBodies: with a Sockmap, a response body larger than its
// QueueLimit (Content-Length or chunked) gets its backend connection
// released and that connection is not reused; a smaller one keeps the
// pooled connection. An upload larger than QueueLimit goes over a
// connection the sockmap excluded before it connected, a smaller one over
// the ordinary pool. The head counts: a body that with a long head (up to
// MaxResponseHeaderBytes) exceeds QueueLimit is released too. A chunked upload larger than QueueLimit minus the
// headroom (its redirected connection may have gone over to the sockmap's
// TCP path for good) closes its connection after the exchange; a smaller
// one leaves it pooled.
func TestSockmapBulkBodies(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		got, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Conn", r.RemoteAddr)
		w.Header().Set("X-Got", strconv.FormatInt(got, 10))
		if pad, _ := strconv.Atoi(r.URL.Query().Get("pad")); pad > 0 {
			w.Header().Set("X-Pad", strings.Repeat("p", pad))
		}
		if r.URL.Path != "/chunked" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		chunk := bytes.Repeat([]byte("b"), 64<<10)
		for left := n; left > 0; left -= len(chunk) {
			if _, err := w.Write(chunk[:min(left, len(chunk))]); err != nil {
				return
			}
			if r.URL.Path == "/chunked" {
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(backend.Close)
	sm := &fakeSockmap{}
	h := newHarness(t, Config{Sockmap: sm, MaxResponseHeaderBytes: 256 << 10}, "/")
	fb := h.backend("/", strings.TrimPrefix(backend.URL, "http://"))
	c := h.client()
	chunked := false // send the next bodies without a Content-Length
	do := func(method, path string, body int) (conn string) {
		t.Helper()
		var rd io.Reader
		if body > 0 {
			rd = bytes.NewReader(make([]byte, body))
			if chunked {
				rd = io.MultiReader(rd) // hides the length from net/http
			}
		}
		req, _ := http.NewRequest(method, h.url(path), rd)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		want, _ := strconv.Atoi(req.URL.Query().Get("n"))
		if err != nil || resp.StatusCode != 200 || n != int64(want) || resp.Header.Get("X-Got") != strconv.Itoa(body) {
			t.Fatalf("%s %s: %d, %d bytes back, backend got %s, %v; want 200, %d, %d", method, path, resp.StatusCode, n, resp.Header.Get("X-Got"), err, want, body)
		}
		return resp.Header.Get("X-Conn")
	}

	small := do("GET", "/?n=1048576", 0)
	if again := do("GET", "/?n=1048576", 0); again != small {
		t.Errorf("two 1 MiB responses: backend connections %s then %s, want the pooled one reused", small, again)
	}
	for range 8 {
		if again := do("GET", "/?n=1048576", 0); again != small {
			t.Fatalf("1 MiB responses one after another: backend connections %s then %s, want the pooled one reused", small, again)
		}
	}
	if r, _ := sm.counts(); r != 0 {
		t.Errorf("1 MiB responses: %d released, want none", r)
	}
	if n := fb.up.conns(); n != 1 {
		t.Errorf("after ten 1 MiB responses on one client connection: %d backend connections, want 1", n)
	}
	big := do("GET", "/?n=5242880", 0)
	if r, _ := sm.counts(); r != 1 || sm.released[0].String() != strings.TrimPrefix(backend.URL, "http://") {
		t.Errorf("a 5 MiB response: released %v, want the backend connection to %s once", sm.released, backend.URL)
	}
	if next := do("GET", "/?n=10", 0); next == big {
		t.Errorf("the connection released for a 5 MiB response (%s) was reused", big)
	}
	// 4 MiB - 100 KiB of body after a 200 KiB head (MaxResponseHeaderBytes
	// allows it): the two together can leave loopgate more than QueueLimit
	// behind.
	padded := do("GET", "/?n=4091904&pad=204800", 0)
	if r, _ := sm.counts(); r != 2 {
		t.Errorf("a 4 MiB - 100 KiB response with a 200 KiB head: %d released in all, want 2", r)
	}
	if next := do("GET", "/?n=10", 0); next == padded {
		t.Errorf("the connection released for a 4 MiB - 100 KiB response (%s) was reused", padded)
	}
	do("GET", "/chunked?n=5242880", 0)
	if r, _ := sm.counts(); r != 3 {
		t.Errorf("a 5 MiB chunked response: %d released in all, want 3", r)
	}
	do("POST", "/?n=10", 1<<20)
	if _, e := sm.counts(); e != 0 {
		t.Errorf("a 1 MiB upload: %d connections excluded from the sockmap, want none", e)
	}
	up := do("POST", "/?n=10", 5<<20)
	if _, e := sm.counts(); e != 1 {
		t.Errorf("a 5 MiB upload: %d connections excluded from the sockmap, want 1", e)
	}
	if again := do("POST", "/?n=10", 5<<20); again != up {
		t.Errorf("two 5 MiB uploads: connections %s then %s, want the bulk pool's reused", up, again)
	}
	if _, e := sm.counts(); e != 1 {
		t.Errorf("a second 5 MiB upload dialed again: %d exclusions, want 1", e)
	}

	chunked = true
	pooled := do("GET", "/?n=10", 0)
	if got := do("POST", "/?n=10", 1<<20); got != pooled {
		t.Errorf("a 1 MiB chunked upload: backend connection %s, want the pooled %s", got, pooled)
	}
	if next := do("GET", "/?n=10", 0); next != pooled {
		t.Errorf("after a 1 MiB chunked upload: backend connection %s, want %s again", next, pooled)
	}
	bulk := do("POST", "/?n=10", 5<<20)
	if bulk != pooled {
		t.Errorf("a 5 MiB chunked upload: backend connection %s, want the pooled %s (its length is not known up front)", bulk, pooled)
	}
	if next := do("GET", "/?n=10", 0); next == bulk {
		t.Errorf("the connection a 5 MiB chunked upload went over (%s) was pooled again", bulk)
	}
	if _, e := sm.counts(); e != 1 {
		t.Errorf("chunked uploads: %d exclusions in all, want 1 (they take the main pool)", e)
	}
}

// TestSockmapBulkUploadKeepsTheCap: an upload for the bulk pool, while
// MaxConnsPerBackend requests are on the process already, waits for the
// main pool instead of opening one more connection: the bulk pool has a
// cap of its own, and the process got MaxConnsPerBackend + 1 requests at
// once.
func TestSockmapBulkUploadKeepsTheCap(t *testing.T) {
	var mu sync.Mutex
	inFlight, most := 0, 0
	hold := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight--
			mu.Unlock()
		}()
		if r.URL.Path == "/hold" {
			<-hold
		}
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strconv.FormatInt(n, 10))
	}))
	t.Cleanup(backend.Close)
	sm := &fakeSockmap{}
	h := newHarness(t, Config{Sockmap: sm, MaxConnsPerBackend: 2}, "/")
	fb := h.backend("/", strings.TrimPrefix(backend.URL, "http://"))
	c := h.client()
	type result struct {
		body string
		err  error
	}
	send := func(method, path string, size int, out chan<- result) {
		var rd io.Reader
		if size > 0 {
			rd = bytes.NewReader(make([]byte, size))
		}
		req, _ := http.NewRequest(method, h.url(path), rd)
		resp, err := c.Do(req)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		out <- result{string(b), err}
	}
	held := make(chan result, 2)
	go send("GET", "/hold", 0, held)
	go send("GET", "/hold", 0, held)
	for deadline := time.Now().Add(10 * time.Second); fb.up.busy.Load() < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the two held requests did not reach the backend: busy %d", fb.up.busy.Load())
		}
	}
	up := make(chan result, 1)
	go send("POST", "/up", 5<<20, up)
	time.Sleep(300 * time.Millisecond) // the upload's chance to open a third connection
	close(hold)
	for range 2 {
		if r := <-held; r.err != nil {
			t.Fatal(r.err)
		}
	}
	select {
	case r := <-up:
		if r.err != nil || r.body != strconv.Itoa(5<<20) {
			t.Fatalf("upload: %q %v", r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upload did not finish within 10 s")
	}
	mu.Lock()
	defer mu.Unlock()
	if most > 2 {
		t.Errorf("the backend had %d requests at once, over MaxConnsPerBackend (2)", most)
	}
}
