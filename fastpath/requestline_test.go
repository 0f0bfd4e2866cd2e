package fastpath

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBareLFHeadTerminator: a head whose blank line, or the line before
// it, ends in a bare LF is answered 400 at once, not 408 after
// --header-read-timeout (defect 4 of issue 13), on a new connection, on a
// kept-alive one and pipelined behind a request; the backend sees none of
// them. A head cut short with no bare LF still waits for the timeout.
func TestBareLFHeadTerminator(t *testing.T) {
	addr, got := capturingBackend(t, okResponse)
	h := newHarness(t, Config{HeaderReadTimeout: 5 * time.Second}, "/")
	h.backend("/", addr)
	for _, head := range []string{
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\n",
		"GET / HTTP/1.1\r\nHost: a\n\r\n",
		"GET / HTTP/1.1\nHost: a\r\n\n",
		"GET / HTTP/1.0\n\n",
		"GET / HTTP/1.0\r\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\n\n",
	} {
		for _, how := range []string{"first", "after a request", "pipelined"} {
			t.Run(strings.ReplaceAll(head, "\n", `\n`)+"/"+how, func(t *testing.T) {
				c := dialRaw(t, h.addr)
				switch how {
				case "after a request":
					if r, _ := c.roundTrip(get("a", "/before")); r.StatusCode != 200 {
						t.Fatalf("first request: %d", r.StatusCode)
					}
					recv(t, got)
					c.send(head)
				case "pipelined":
					c.send(get("a", "/before") + head)
					if r, _ := c.response("GET"); r.StatusCode != 200 {
						t.Fatalf("first request: %d", r.StatusCode)
					}
					recv(t, got)
				default:
					c.send(head)
				}
				start := time.Now()
				r, _ := c.response("GET")
				if r.StatusCode != 400 || time.Since(start) > 2*time.Second {
					t.Errorf("status %d after %v, want 400 at once", r.StatusCode, time.Since(start))
				}
				select {
				case req := <-got:
					t.Errorf("backend saw %q", req.lines()[0])
				default:
				}
			})
		}
	}
	t.Run("after a parked idle time", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/before")); r.StatusCode != 200 {
			t.Fatalf("first request: %d", r.StatusCode)
		}
		recv(t, got)
		time.Sleep(parkAfter + 500*time.Millisecond) // the connection waits in the poller
		c.send("GET / HTTP/1.1\r\nHost: a\r\n\n")
		start := time.Now()
		if r, _ := c.response("GET"); r.StatusCode != 400 || time.Since(start) > 2*time.Second {
			t.Errorf("status %d after %v, want 400 at once", r.StatusCode, time.Since(start))
		}
	})
	t.Run("incomplete head waits", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		c.send("GET / HTTP/1.1\r\nHost: a\r\n")
		if c.closedByPeer(300 * time.Millisecond) {
			t.Fatal("an incomplete head was refused before its time")
		}
	})
}

// TestBodyEndingInLFLF: a body with "\n\n" at the end of a segment, more
// of it still to come, is a body: the guard against bare-LF heads does not
// take it for one (small bodies are read before the handler runs, while
// fasthttp has not yet handed the request over).
func TestBodyEndingInLFLF(t *testing.T) {
	addr, got := capturingBackend(t, okResponse)
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	for _, how := range []string{"alone", "pipelined"} {
		t.Run(how, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			head := "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nab"
			if how == "pipelined" {
				head = get("a", "/before") + head
			}
			c.send(head)
			for _, part := range []string{"c\n\n", "\n"} {
				time.Sleep(50 * time.Millisecond)
				c.send(part)
			}
			if how == "pipelined" {
				if r, _ := c.response("GET"); r.StatusCode != 200 {
					t.Fatalf("first request: %d", r.StatusCode)
				}
				recv(t, got)
			}
			if r, _ := c.response("POST"); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			if r := recv(t, got); string(r.body) != "abc\n\n\n" {
				t.Errorf("backend got body %q", r.body)
			}
		})
	}
}

// TestBareLFHeadTerminatorTLS: the same over TLS (HTTP/1.1 by ALPN, and
// with HTTP/2 off), where fasthttp reads the TLS connection.
func TestBareLFHeadTerminatorTLS(t *testing.T) {
	for _, h2off := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2off=%v", h2off), func(t *testing.T) {
			h := newTLSHarness(t, Config{HeaderReadTimeout: 5 * time.Second, DisableHTTP2: h2off})
			h.backend(func(w http.ResponseWriter, r *http.Request) { t.Errorf("backend saw %s %s", r.Method, r.URL) })
			tc, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: a\r\n\n"); err != nil {
				t.Fatal(err)
			}
			r, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != 400 || time.Since(start) > 2*time.Second {
				t.Errorf("status %d after %v, want 400 at once", r.StatusCode, time.Since(start))
			}
		})
	}
}

// TestRequestLineVersions: loopgate answers a major version other than 1
// itself, 505 (400 for major 0 and for the HTTP/2 connection preface on a
// listener that speaks HTTP/1.1), and closes; the app sees nothing. Any 1.x reaches the
// app as HTTP/1.1 (defect 5 of issue 13), as nginx with proxy_http_version
// 1.1 and ANCM (WinHTTP) do: an HTTP/1.0 request without Host gets one
// (the address the client connected to), a later minor version is taken
// for 1.1 (RFC 9110 §2.5: keep-alive, Host required).
func TestRequestLineVersions(t *testing.T) {
	addr, got := capturingBackend(t, okResponse)
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/9.9", "GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505},
		{"HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 400},
		{"POST HTTP/2.0 with a body", "POST / HTTP/2.0\r\nHost: a\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 505},
		{"HTTP/2.0 with Expect: 100-continue", "POST / HTTP/2.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 35\r\n\r\n", 505},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400},
		{"HTTP/1.2 without Host", "GET / HTTP/1.2\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.send(tc.req)
			c.send(get("a", "/after"))
			r, _ := c.response("GET")
			if r.StatusCode != tc.status {
				t.Errorf("status %d, want %d", r.StatusCode, tc.status)
			}
			if !r.Close && !c.closedByPeer(time.Second) {
				t.Error("connection kept open")
			}
			select {
			case req := <-got:
				t.Errorf("backend saw %q", req.lines()[0])
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
	for _, tc := range []struct {
		name, req, line string
		host            string // the Host the app sees
		keepAlive       bool   // the client connection stays open for a next request
	}{
		{"HTTP/1.2", "GET /x HTTP/1.2\r\nHost: a\r\n\r\n", "GET /x HTTP/1.1", "a", true},
		{"HTTP/1.9 with Connection: close", "GET /x HTTP/1.9\r\nHost: a\r\nConnection: close\r\n\r\n", "GET /x HTTP/1.1", "a", false},
		{"HTTP/1.0", "GET /x HTTP/1.0\r\nHost: a\r\n\r\n", "GET /x HTTP/1.1", "a", false},
		{"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", "GET /x HTTP/1.1", "a", true},
		{"HTTP/1.0 without Host", "GET /x HTTP/1.0\r\n\r\n", "GET /x HTTP/1.1", h.addr, false},
		{"HTTP/1.0 with an empty Host", "GET /x HTTP/1.0\r\nHost:\r\n\r\n", "GET /x HTTP/1.1", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			r, body := c.roundTrip(tc.req)
			if r.StatusCode != 200 || string(body) != "ok" || r.Proto != "HTTP/1.1" {
				t.Errorf("%s %d %q", r.Proto, r.StatusCode, body)
			}
			req := recv(t, got)
			if req.lines()[0] != tc.line {
				t.Errorf("backend saw %q, want %q", req.lines()[0], tc.line)
			}
			if hosts := req.values("Host"); len(hosts) != 1 || hosts[0] != tc.host {
				t.Errorf("backend saw Host %q, want [%q]", hosts, tc.host)
			}
			if tc.keepAlive {
				if r, _ := c.roundTrip(get("a", "/next")); r.StatusCode != 200 {
					t.Errorf("next request: %d", r.StatusCode)
				}
				recv(t, got)
			} else if !c.closedByPeer(time.Second) {
				t.Error("connection kept open")
			}
		})
	}
}

// TestPathNormalization: the app is chosen on the path with its dot
// segments removed (RFC 3986 §5.2.4; a dot may be written %2e), the app
// gets the target that was routed, %2F and the query are left alone, and a
// path climbing above "/" gets 400 (defect 7 of issue 13).
func TestPathNormalization(t *testing.T) {
	rootAddr, rootGot := capturingBackend(t, okResponse)
	apiAddr, apiGot := capturingBackend(t, okResponse)
	h := newHarness(t, Config{}, "/", "/api")
	h.backend("/", rootAddr)
	h.backend("/api", apiAddr)
	for _, tc := range []struct{ target, app, forwarded string }{
		{"/api/../x", "/", "/x"},
		{"/api/./v", "/api", "/api/v"},
		{"/x/../api/v?q=/../", "/api", "/api/v?q=/../"},
		{"/api/%2e%2e/x", "/", "/x"},
		{"/api/%2E./x%2e", "/", "/x%2e"},
		{"/API/../api/a", "/api", "/api/a"},
		{"/api%2F..%2Fx", "/", "/api%2F..%2Fx"},
		{"/api/..%2Fx", "/api", "/api/..%2Fx"},
		{"/api/a//../b", "/api", "/api/a/b"},
		{"/api/..", "/", "/"},
		{"/api/.", "/api", "/api/"},
		{"/api/...", "/api", "/api/..."},
		{"/api/.hidden/%2e%2e", "/api", "/api/"},
		{"/./api", "/api", "/api"},
		{"http://h/api/../x?y", "/", "http://h/x?y"},
		{"/api/x", "/api", "/api/x"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			if r, _ := c.roundTrip(get("a", tc.target)); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			var req rawRequest
			app := "/"
			select {
			case req = <-rootGot:
			case req = <-apiGot:
				app = "/api"
			case <-time.After(5 * time.Second):
				t.Fatal("no request reached a backend")
			}
			if app != tc.app || req.lines()[0] != "GET "+tc.forwarded+" HTTP/1.1" {
				t.Errorf("app %s got %q, want app %s with %q", app, req.lines()[0], tc.app, tc.forwarded)
			}
		})
	}
	for _, target := range []string{"/..", "/../x", "/api/../../x", "/%2e%2e/x", "/a/%2E%2e/..", "http://h/../x"} {
		t.Run("climbs "+target, func(t *testing.T) {
			c := dialRaw(t, h.addr)
			c.send(get("a", target))
			c.send(get("a", "/after"))
			if r, _ := c.response("GET"); r.StatusCode != 400 {
				t.Errorf("status %d, want 400", r.StatusCode)
			}
			if !c.closedByPeer(time.Second) {
				t.Error("connection kept open")
			}
			select {
			case req := <-rootGot:
				t.Errorf("backend saw %q", req.lines()[0])
			case req := <-apiGot:
				t.Errorf("backend saw %q", req.lines()[0])
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
	t.Run("Expect: 100-continue climbing", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		c.send("POST /../x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		if r, _ := c.response("POST"); r.StatusCode != 400 {
			t.Errorf("status %d, want 400 (no 100 Continue)", r.StatusCode)
		}
	})
}

// TestCutChunkedUploadTLS: a chunked upload whose client's TCP stream ends
// after a chunk, over TLS (HTTP/1.1), does not reach the app as complete:
// the head guard's TLS wrapper must not hide the client's FIN from the
// upload (clientEOF).
func TestCutChunkedUploadTLS(t *testing.T) {
	h := newTLSHarness(t, Config{})
	got := make(chan error, 1)
	h.backend(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
	})
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, &tls.Config{RootCAs: h.roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if _, err := io.WriteString(tc, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	raw.(*net.TCPConn).CloseWrite() // a FIN without close_notify: the network cut it
	select {
	case err := <-got:
		if err == nil {
			t.Error("the app read a complete body from a cut upload")
		}
	case <-time.After(5 * time.Second):
		t.Error("the app's body read did not end within 5 s")
	}
}
