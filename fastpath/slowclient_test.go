package fastpath

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// TestSlowReaderCut: a client that requests a large response and stops
// reading is disconnected SendTimeout after its buffers filled, the
// backend request ends with it, and another client is served meanwhile.
func TestSlowReaderCut(t *testing.T) {
	const size = 256 << 20
	backend := httptest.NewServer(bigOrSmall(size))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{SendTimeout: 500 * time.Millisecond}, "/")
	b := h.backend("/", backend.Listener.Addr().String())

	slow := dialRaw(t, h.addr)
	slow.send(get("a", "/big"))
	othersServed(t, h.client(), h.url("/small"))
	waitFor(t, func() bool { return h.srv.InFlight() == 0 }, "the slow reader's exchange ended")
	if b.released.Load() != b.acquired.Load() {
		t.Errorf("backend acquired %d, released %d", b.acquired.Load(), b.released.Load())
	}
	_ = slow.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, slow.c)
	if n >= size {
		t.Errorf("the slow reader got all %d bytes: not cut", n)
	}
	h.obs.mu.Lock()
	defer h.obs.mu.Unlock()
	found := false
	for _, i := range h.obs.infos {
		if i.BytesOut > 0 && i.BytesOut < size && i.Status == 200 && i.BytesOut != 2 {
			found = true
			if !i.Aborted {
				t.Errorf("slow reader's request not recorded as aborted: %+v", i)
			}
		}
	}
	if !found {
		t.Errorf("no observation of the slow reader's request")
	}
	t.Logf("slow reader cut after %d bytes", n)
}

// TestSlowReaderCutTLS: over TLS, too, a client that stops reading a large
// response is disconnected SendTimeout after its buffers filled, while
// other requests on the same listener are answered. The send timeout rides
// on the TCP connection under crypto/tls (armSend), and a response written
// to it before stays bounded on the next request of the connection.
func TestSlowReaderCutTLS(t *testing.T) {
	const size = 256 << 20
	h := newTLSHarness(t, Config{SendTimeout: 500 * time.Millisecond, DisableHTTP2: true})
	h.backend(bigOrSmall(size))
	slow, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_ = slow.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(slow)
	// A small response first: the big one is the connection's second.
	if _, err := io.WriteString(slow, get("a", "/small")); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first response: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	if _, err := io.WriteString(slow, get("a", "/big")); err != nil {
		t.Fatal(err)
	}
	othersServed(t, h.client(false), h.url("/small"))
	waitFor(t, func() bool { return h.srv.InFlight() == 0 }, "the slow reader's exchange ended")
	n, _ := io.Copy(io.Discard, br)
	if n >= size {
		t.Errorf("the slow reader got all %d bytes: not cut", n)
	}
	t.Logf("slow TLS reader cut after %d bytes", n)
}

// othersServed checks, for 2 s, that another client's requests to url are
// answered 200 while a slow reader holds its exchange.
func othersServed(t *testing.T, other *http.Client, url string) {
	t.Helper()
	for i, start := 0, time.Now(); time.Since(start) < 2*time.Second; i++ {
		resp, err := other.Get(url)
		if err != nil {
			t.Fatalf("other client, request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("other client, request %d: %d", i, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bigOrSmall is the slow-reader tests' app: /big answers size bytes, any
// other path "ok".
func bigOrSmall(size int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/big" {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		buf := make([]byte, 1<<20)
		for range size >> 20 {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}
}
