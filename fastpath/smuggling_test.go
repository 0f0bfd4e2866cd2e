package fastpath

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSmugglingCorpus sends ambiguous framings over raw TCP. Each must be
// answered 400 (or the 4xx the case names), and the backend must never see the request hidden in the
// body (path /smuggled) nor two requests where the client meant one.
func TestSmugglingCorpus(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r, err := readRawRequest(br)
			if r.head != "" {
				mu.Lock()
				seen = append(seen, r.lines()[0])
				mu.Unlock()
			}
			if err != nil {
				return
			}
			c.Write([]byte(okResponse))
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)

	const hidden = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	corpus := []struct {
		name, req string
		// reachesBackend: the head is valid and forwarded; the fault is in
		// the chunked body, found while streaming it.
		reachesBackend bool
		status         int // 0: 400
	}{
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"duplicated Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 37\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 37, 37\r\n\r\n" + hidden, false, 0},
		{"signed Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +37\r\n\r\n" + hidden, false, 0},
		{"Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"bare identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n" + hidden, false, 0},
		{"Transfer-Encoding twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"obfuscated value", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n" + hidden, false, 0},
		{"obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"bare LF headers", "GET / HTTP/1.1\nHost: a\nContent-Length: 37\n\n" + hidden, false, 0},
		{"bare LF in one header line", "POST / HTTP/1.1\r\nHost: a\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"bare LF after chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n25\n" + hidden + "\r\n0\r\n\r\n", true, 0},
		{"bare LF after chunk data", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n" + hidden, true, 0},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000001\r\nx\r\n0\r\n\r\n" + hidden, true, 0},
		{"LF in chunk extension", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\nb\r\nx\r\n0\r\n\r\n" + hidden, true, 0},
		{"duplicated Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"NUL in a header value", "POST / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"NUL in a header name", "POST / HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"CR in a header value", "POST / HTTP/1.1\r\nHost: a\r\nX-A: a\rContent-Length: 0\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"CR ending a header value", "POST / HTTP/1.1\r\nHost: a\r\nX-A: a\r\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"CR in the Transfer-Encoding value", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r, identity\r\nContent-Length: 37\r\n\r\n" + hidden, false, 0},
		{"oversized chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\nx\r\n0\r\n\r\n" + hidden, true, 0},
		{"chunk size with 23 digits", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000000023\r\n" + hidden + "\r\n0\r\n\r\n", true, 0},
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n" + hidden, true, 0},
		{"0x-prefixed chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x23\r\n" + hidden + "\r\n0\r\n\r\n", true, 0},
		{"junk after the chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\nx\r\n0\r\n\r\n" + hidden, true, 0},
		{"bare CR in a chunk extension", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rb\r\nx\r\n0\r\n\r\n" + hidden, true, 0},
		{"quoted CRLF in a chunk extension", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"\r\n0\r\n\r\n" + hidden + "\"\r\nx\r\n0\r\n\r\n", true, 0},
		{"Expect: 100-continue with a rejected length, body sent anyway", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 40000000\r\n\r\n" + hidden, false, 413},
	}
	for _, tc := range corpus {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			c := dialRaw(t, h.addr)
			c.send(tc.req)
			// A further, honest request right behind: if the corpus entry
			// desynchronised framing, this would be read as part of it.
			c.send(get("a", "/after"))
			resp, _ := c.response("POST")
			want := tc.status
			if want == 0 {
				want = 400
			}
			if resp.StatusCode != want {
				t.Errorf("status %d, want %d", resp.StatusCode, want)
			}
			if !resp.Close && !c.closedByPeer(time.Second) {
				t.Errorf("connection kept open after a framing error")
			}
			time.Sleep(20 * time.Millisecond) // let the backend log what it got
			mu.Lock()
			got := append([]string(nil), seen...)
			mu.Unlock()
			for _, line := range got {
				if strings.Contains(line, "/smuggled") || strings.Contains(line, "/after") {
					t.Errorf("backend saw %q", line)
				}
			}
			if !tc.reachesBackend && len(got) > 0 {
				t.Errorf("backend saw %q; the request should have been refused before forwarding", got)
			}
			if len(got) > 1 {
				t.Errorf("backend saw %d requests: %q", len(got), got)
			}
		})
	}
}

// TestFramingForwardedIntact sends odd but valid requests, each followed
// on the same connection by an honest one. The backend must see exactly
// two requests: the odd one with its target byte for byte and exactly its
// body (a request hidden in a body stays body), then the honest one.
func TestFramingForwardedIntact(t *testing.T) {
	addr, got := capturingBackend(t, okResponse)
	h := newHarness(t, Config{}, "/", "/api")
	h.backend("/", addr)
	api := h.backend("/api", addr)
	const hidden = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n" // 35 bytes, 0x23
	for _, tc := range []struct {
		name, req, line, body string
		interim               bool // loopgate answers 100 Continue first
		toAPI                 bool // routed to the app at /api
		// streamed: the body is streamed to the backend, which may answer
		// before loopgate has seen the body end; the client connection
		// then closes after the response, so the honest request follows
		// on a new connection instead of pipelined.
		streamed bool
	}{
		{name: "absolute-form target", req: "GET http://evil.example/api/x HTTP/1.1\r\nHost: a\r\n\r\n",
			line: "GET http://evil.example/api/x HTTP/1.1", toAPI: true},
		{name: "absolute-form target without a path", req: "GET http://evil.example HTTP/1.1\r\nHost: a\r\n\r\n",
			line: "GET http://evil.example HTTP/1.1"},
		{name: "origin-form target that looks like an authority", req: "GET //evil.example/api HTTP/1.1\r\nHost: a\r\n\r\n",
			line: "GET //evil.example/api HTTP/1.1"},
		// RFC 9112 §2.2 lets a recipient take a bare LF as a line end;
		// fasthttp does for the request line (not for header lines,
		// refused by scanRequestHeaders), and the backend gets a request
		// line loopgate wrote, ending in CRLF.
		{name: "bare LF ending the request line", req: "GET /lf HTTP/1.1\nHost: a\r\n\r\n",
			line: "GET /lf HTTP/1.1"},
		{name: "GET with a body holding a request", req: "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\n" + hidden,
			line: "GET / HTTP/1.1", body: hidden},
		{name: "Expect: 100-continue with the body sent at once", req: "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 35\r\n\r\n" + hidden,
			line: "POST / HTTP/1.1", body: hidden, interim: true},
		{name: "empty chunk extension", req: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n23;\r\n" + hidden + "\r\n0\r\n\r\n",
			line: "POST / HTTP/1.1", body: hidden, streamed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := api.acquired.Load()
			c := dialRaw(t, h.addr)
			c.send(tc.req)
			if !tc.streamed {
				c.send(get("a", "/after"))
			}
			if tc.interim {
				if line, err := c.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
					t.Fatalf("interim %q %v", line, err)
				}
				c.br.ReadString('\n')
			}
			method, _, _ := strings.Cut(tc.req, " ")
			if r, _ := c.response(method); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			if tc.streamed {
				c = dialRaw(t, h.addr)
				c.send(get("a", "/after"))
			}
			if r, _ := c.response("GET"); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			first, second := recv(t, got), recv(t, got)
			if first.lines()[0] != tc.line || string(first.body) != tc.body {
				t.Errorf("backend saw %q with body %q, want %q with %q", first.lines()[0], first.body, tc.line, tc.body)
			}
			if second.lines()[0] != "GET /after HTTP/1.1" {
				t.Errorf("second request at the backend: %q", second.lines()[0])
			}
			select {
			case r := <-got:
				t.Errorf("a third request reached the backend: %q", r.lines()[0])
			case <-time.After(20 * time.Millisecond):
			}
			if routed := api.acquired.Load() > before; routed != tc.toAPI {
				t.Errorf("routed to /api: %v, want %v", routed, tc.toAPI)
			}
		})
	}
}
