package fastpath

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

func TestBodyLimit(t *testing.T) {
	var reached atomic.Int64
	bodyErr := make(chan error, 4)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- err
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	h.backend("/", backend.Listener.Addr().String())
	h.setSpec("/", func(s *configload.AppSpec) { s.MaxAllowedContentLength = 100 << 10 })

	// Known length: 413 before anything is sent, and the connection closes.
	c := dialRaw(t, h.addr)
	c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 102401\r\n\r\n" + strings.Repeat("z", 16<<10))
	r, _ := c.response("POST")
	if r.StatusCode != 413 || !r.Close {
		t.Errorf("over-limit Content-Length: %d close=%v, want 413 and close", r.StatusCode, r.Close)
	}
	if reached.Load() != 0 {
		t.Errorf("backend saw the over-limit request")
	}

	// Expect: 100-continue over the limit: 413 instead of 100, nothing sent.
	c = dialRaw(t, h.addr)
	c.send("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 102401\r\n\r\n")
	if r, _ := c.response("POST"); r.StatusCode != 413 {
		t.Errorf("Expect with an over-limit length: %d, want 413", r.StatusCode)
	}
	if reached.Load() != 0 {
		t.Errorf("backend saw an over-limit request")
	}

	// Exactly at the limit passes.
	resp, err := h.client().Post(h.url("/"), "application/octet-stream", bytes.NewReader(make([]byte, 100<<10)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("at the limit: %v %v", resp, err)
	}
	resp.Body.Close()
	if err := recv(t, bodyErr); err != nil {
		t.Errorf("backend read at-limit body: %v", err)
	}

	// Chunked: cut when the limit is crossed.
	c = dialRaw(t, h.addr)
	c.send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 16<<10, strings.Repeat("z", 16<<10))
	for i := 0; i < 7; i++ { // 112 KiB > 100 KiB
		c.send(chunk)
	}
	r, _ = c.response("POST")
	if r.StatusCode != 413 || !r.Close {
		t.Errorf("over-limit chunked body: %d close=%v, want 413 and close", r.StatusCode, r.Close)
	}
	if err := recv(t, bodyErr); err == nil {
		t.Errorf("backend read a complete body although the limit was crossed")
	}
}

// TestTooLargeAnswerReachesUploader: a client that keeps sending an
// over-limit body it declared (Go's http.Client, without Expect) still gets
// the 413. Without a lingering close, loopgate's close with the body unread
// sends a reset that fails the client's upload before it reads the answer.
func TestTooLargeAnswerReachesUploader(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	h.backend("/", refusedAddr(t))
	h.setSpec("/", func(s *configload.AppSpec) { s.MaxAllowedContentLength = 1000 })
	c := h.client()
	for i := range 5 {
		body := io.LimitReader(&pattern{}, 3<<20) // more than the socket buffers, less than maxDiscardBytes
		req, _ := http.NewRequest("POST", "http://"+h.addr+"/", body)
		req.ContentLength = 3 << 20
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("attempt %d: the 413 was lost: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("attempt %d: status %d, want 413", i, resp.StatusCode)
		}
	}
}

// TestEarlyAnswerDuringUpload: an app that answers a streamed upload
// without reading it and closes its connection (403 for a refused upload,
// 413 for one too large) gets its answer to the client, even when the
// body's next write meets the app's close before the answer was read. That
// write's EPIPE or reset used to close the connection under the response
// read, and the client got 502.3 "closed the connection without answering"
// in about one attempt in a hundred.
func TestEarlyAnswerDuringUpload(t *testing.T) {
	early := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err == nil {
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
			// A reset right after the answer, so that the body's next
			// write fails at once: the race is lost more often.
			c.(*net.TCPConn).SetLinger(0)
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", early)
	body := strings.Repeat("x", smallBodyBytes+1)
	req := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", 10*len(body), body)
	// Four clients at a time, so that the pump and the response read are
	// scheduled in every order.
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				c, err := net.Dial("tcp", h.addr)
				if err != nil {
					errs <- err.Error()
					return
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r, got, err := postOnce(c, req)
				c.Close()
				if err != nil {
					errs <- fmt.Sprintf("client %d attempt %d: %v", w, i, err)
					return
				}
				if r.StatusCode != 403 || string(got) != "no" || !r.Close {
					errs <- fmt.Sprintf("client %d attempt %d: %d %q, Connection: close %v", w, i, r.StatusCode, got, r.Close)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// postOnce sends req on c and reads the response and its body.
func postOnce(c net.Conn, req string) (*http.Response, []byte, error) {
	if _, err := io.WriteString(c, req); err != nil {
		return nil, nil, err
	}
	r, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
	if err != nil {
		return nil, nil, err
	}
	got, err := io.ReadAll(r.Body)
	return r, got, err
}

// TestStreamedUploadKeepsAlive: a streamed request body (over
// smallBodyBytes, by length or chunked) that the backend reads whole before
// answering leaves the client connection open for the next request, even
// when the backend's answer overtakes the body pump's report; a backend
// that answers without reading the body closes it after the response.
func TestStreamedUploadKeepsAlive(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			// The fastest possible answer, to meet the pump's report.
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(strconv.Itoa(len(req.body)))); err != nil {
				return
			}
			io.WriteString(c, strconv.Itoa(len(req.body)))
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	body := strings.Repeat("x", smallBodyBytes+1)
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	for i := range 200 {
		req := fmt.Sprintf("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		if i%2 == 1 {
			req = "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
		}
		r, got := c.roundTrip(req)
		if r.StatusCode != 200 || string(got) != strconv.Itoa(len(body)) || r.Close {
			t.Fatalf("request %d: %d %q, Connection: close %v", i, r.StatusCode, got, r.Close)
		}
	}

	early := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err == nil {
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
		}
	})
	h.apps["/"].setBackends()
	h.backend("/", early)
	c = dialRaw(t, h.addr)
	// The head and a part of the declared body; the rest never comes.
	c.send(fmt.Sprintf("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", 10*len(body), body))
	if r, got := c.response("POST"); r.StatusCode != 403 || string(got) != "no" || !r.Close {
		t.Errorf("early answer: %d %q, Connection: close %v", r.StatusCode, got, r.Close)
	}
	if !c.closedByPeer(5 * time.Second) {
		t.Error("the connection stayed open with the request body unread")
	}
}
