package fastpath

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// TestStreamingResponse: the first chunk of a slow response reaches the
// client while the backend is still holding the rest back.
func TestStreamingResponse(t *testing.T) {
	for _, framing := range []string{"chunked", "content-length"} {
		t.Run(framing, func(t *testing.T) {
			release := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if framing == "content-length" {
					w.Header().Set("Content-Length", "10")
				}
				io.WriteString(w, "first")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-time.After(5 * time.Second):
				}
				io.WriteString(w, "-last")
			}))
			t.Cleanup(backend.Close)
			h := newHarness(t, Config{}, "/")
			h.backend("/", backend.Listener.Addr().String())
			resp, err := h.client().Get(h.url("/"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, 5)
			got := make(chan error, 1)
			go func() { _, err := io.ReadFull(resp.Body, first); got <- err }()
			if err := recv(t, got); err != nil || string(first) != "first" {
				t.Fatalf("first chunk %q, %v: not flushed while the backend waits", first, err)
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "-last" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

// TestRequestTimeoutIsInactivity: a response that keeps producing data is
// never cut, whatever its total time; a silent backend gets 502.3; a backend
// that stalls mid-body gets the client connection reset.
func TestRequestTimeoutIsInactivity(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/trickle": // 10 × 150 ms = 1.5 s total, against a 1 s timeout
			// Gaps far below the timeout: a loaded CI machine may stretch a
			// 60 ms sleep past 200 ms, which failed a full run once.
			for i := 0; i < 10; i++ {
				io.WriteString(w, "x")
				w.(http.Flusher).Flush()
				time.Sleep(150 * time.Millisecond)
			}
		case "/silent":
			time.Sleep(2 * time.Second)
		case "/stall":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Second)
		}
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	h.backend("/", backend.Listener.Addr().String())
	h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = time.Second })
	cl := h.client()

	resp, err := cl.Get(h.url("/trickle"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "xxxxxxxxxx" {
		t.Errorf("trickling response cut: %q, %v", body, err)
	}

	resp, err = cl.Get(h.url("/silent"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(body), "502.3") {
		t.Errorf("silent backend: %d %q, want the 502.3 page", resp.StatusCode, body)
	}

	resp, err = cl.Get(h.url("/stall"))
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("stalled body: %q, %v; want the connection reset", body, err)
	}
}

// TestTruncatedBodyResets: a backend that closes before the end of its
// Content-Length body makes loopgate reset the client connection.
func TestTruncatedBodyResets(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	c.send(get("a", "/"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("truncated body read cleanly (%d bytes)", len(body))
	}
	if !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("error %v: want a reset", err)
	}
	if i := h.obs.wait(t, 1); !i.Aborted || i.Status != 200 {
		t.Errorf("observer: %+v, want an aborted 200", i)
	}
}

// TestTrailersHTTP11: the trailer fields of a chunked response reach an
// HTTP/1.1 client after the last chunk, except those that may not be
// trailers (framing, Set-Cookie), a repeat of a head field, and a value
// with a control character; the connection stays in step for the next
// request.
func TestTrailersHTTP11(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Never\r\nX-Dup: head\r\n\r\n"+
				"4\r\nbody\r\n0\r\n"+
				"X-Checksum: abc\r\nServer-Timing: db;dur=53\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\nX-Bad: a\x01b\r\nX-Dup: trailer\r\n\r\n")
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	for i := range 2 {
		r, body := c.roundTrip(get("a", "/"))
		want := http.Header{"X-Checksum": {"abc"}, "Server-Timing": {"db;dur=53"}}
		if r.StatusCode != 200 || string(body) != "body" || !reflect.DeepEqual(r.Trailer, want) || r.Header.Get("X-Dup") != "head" {
			t.Errorf("request %d: %d %q, trailers %v (want %v), X-Dup %q", i, r.StatusCode, body, r.Trailer, want, r.Header.Get("X-Dup"))
		}
	}
}

func TestLargeTransfersStream(t *testing.T) {
	const up = 64 << 20
	const down = 256 << 20
	const bound = 24 << 20 // far below either size: nothing is held whole
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			hash := sha256.New()
			n, err := io.Copy(hash, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, hash.Sum(nil))
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(down))
			io.CopyN(w, &pattern{}, down)
		}
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	h.backend("/", backend.Listener.Addr().String())
	h.setSpec("/", func(s *configload.AppSpec) { s.MaxAllowedContentLength = 1<<32 - 1 })
	cl := h.client()

	want := sha256.New()
	io.CopyN(want, &pattern{}, up)
	wantUp := fmt.Sprintf("%d %x", up, want.Sum(nil))
	for _, chunked := range []bool{false, true} {
		var got string
		growth := memWatch(t, func() {
			req, _ := http.NewRequest("POST", h.url("/upload"), io.LimitReader(&pattern{}, up))
			if !chunked {
				req.ContentLength = up
			}
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(b)
		})
		if got != wantUp {
			t.Errorf("upload (chunked=%v): backend got %q, want %q", chunked, got, wantUp)
		}
		if growth > bound {
			t.Errorf("upload (chunked=%v): heap grew %d MiB", chunked, growth>>20)
		}
	}

	want.Reset()
	io.CopyN(want, &pattern{}, down)
	var n int64
	hash := sha256.New()
	growth := memWatch(t, func() {
		resp, err := cl.Get(h.url("/download"))
		if err != nil {
			t.Fatal(err)
		}
		n, err = io.Copy(hash, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
	})
	if n != down || !bytes.Equal(hash.Sum(nil), want.Sum(nil)) {
		t.Errorf("download: %d bytes, hash match %v", n, bytes.Equal(hash.Sum(nil), want.Sum(nil)))
	}
	if growth > bound {
		t.Errorf("download: heap grew %d MiB", growth>>20)
	}
	if i := h.obs.wait(t, 3); i.BytesOut != down {
		t.Errorf("observer BytesOut %d", i.BytesOut)
	}
}

// memWatch samples HeapInuse while f runs and returns the growth over the
// starting value.
func memWatch(t *testing.T, f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	if p := peak.Load(); p > base {
		return p - base
	}
	return 0
}

// pattern is an endless, cheap, non-repeating-looking byte stream.
type pattern struct{ n uint64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.n++
		b[i] = byte(p.n*2654435761>>13) ^ byte(p.n>>8)
	}
	return len(b), nil
}
