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
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

func TestResponseRules(t *testing.T) {
	const resp = "HTTP/1.1 299 Custom Reason Here\r\n" +
		"Date: Mon, 01 Jan 2001 00:00:00 GMT\r\n" +
		"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\n" +
		"X-Dup: 1\r\nX-Dup: 2\r\n" +
		"Keep-Alive: timeout=5\r\nConnection: keep-alive\r\n" +
		"Content-Length: 5\r\n\r\nhello"
	h := newHarness(t, Config{}, "/")
	addr, _ := capturingBackend(t, resp)
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	r, body := c.roundTrip(get("a", "/"))
	if r.StatusCode != 299 || r.Status != "299 Custom Reason Here" {
		t.Errorf("status line %q", r.Status)
	}
	if string(body) != "hello" {
		t.Errorf("body %q", body)
	}
	if d := r.Header.Get("Date"); d == "" || strings.Contains(d, "2001") || len(r.Header.Values("Date")) != 1 {
		t.Errorf("Date %q: want loopgate's own, once", r.Header.Values("Date"))
	}
	if v := r.Header.Values("Set-Cookie"); len(v) != 2 {
		t.Errorf("Set-Cookie %q", v)
	}
	if v := r.Header.Values("X-Dup"); len(v) != 2 {
		t.Errorf("X-Dup %q", v)
	}
	for _, hop := range []string{"Connection", "Keep-Alive", "Server"} {
		if v := r.Header.Values(hop); len(v) > 0 {
			t.Errorf("%s reached the client: %q", hop, v)
		}
	}
}

func TestResponseConnectionHeader(t *testing.T) {
	// A backend that says Connection: close (and closes).
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nServer: Kestrel\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	r, _ := c.roundTrip(get("a", "/"))
	if r.Header.Get("Connection") != "" || r.Close {
		t.Errorf("Connection: close reached the client (default drops it)")
	}
	if r.Header.Get("Server") != "Kestrel" {
		t.Errorf("Server %q: the backend's must pass", r.Header.Get("Server"))
	}
	// The client connection stays usable; the backend connection is new.
	if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
		t.Fatalf("second request on the same client connection: %d", r.StatusCode)
	}

	h.setSpec("/", func(s *configload.AppSpec) { s.ForwardResponseConnectionHeader = true })
	r, _ = c.roundTrip(get("a", "/"))
	if !r.Close {
		t.Errorf("forwardResponseConnectionHeader=true: Connection: close must reach the client")
	}
}

func TestInterimAndRedirect(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+
				"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n")
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	c.send(get("a", "/"))
	line, _ := c.br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 103") {
		t.Fatalf("first line %q: want the 103 relayed (and the 100 swallowed)", line)
	}
	hints, _ := c.br.ReadString('\n')
	if !strings.Contains(hints, "</style.css>") {
		t.Errorf("103 without its Link: %q", hints)
	}
	for l := hints; l != "\r\n"; l, _ = c.br.ReadString('\n') {
	}
	r, _ := c.response("GET")
	if r.StatusCode != 302 || r.Header.Get("Location") != "http://elsewhere.example/" {
		t.Errorf("redirect not passed through: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestHTTP10Client: a response without a length reaches an HTTP/1.0 client
// delimited by the connection's close, never chunked.
func TestHTTP10Client(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			io.WriteString(w, "line\n")
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	h.backend("/", backend.Listener.Addr().String())
	for _, proto := range []string{"HTTP/1.0", "HTTP/1.1"} {
		c := dialRaw(t, h.addr)
		r, body := c.roundTrip("GET / " + proto + "\r\nHost: a\r\n\r\n")
		chunked := len(r.TransferEncoding) > 0
		if r.StatusCode != 200 || string(body) != "line\nline\nline\n" || chunked != (proto == "HTTP/1.1") {
			t.Errorf("%s: %d %q chunked=%v", proto, r.StatusCode, body, chunked)
		}
	}
}

func TestStartupErrorPages(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	h.apps["/"].setOutcome(supervisor.StartFailed)
	c := dialRaw(t, h.addr)

	r, body := c.roundTrip(get("a", "/"))
	if r.StatusCode != 502 || r.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("502.5: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	page := string(body)
	for _, want := range []string{
		"<title> HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure </title>",
		"<h1> HTTP Error 502.5 - ANCM Out-Of-Process Startup Failure </h1>",
		"<h2> Common solutions to this issue: </h2><ul><li> The application process failed to start </li><li> The application process started but then stopped </li><li> The application process started but failed to listen on the configured port </li></ul>",
		// The troubleshooting steps point a Linux operator at what exists
		// (ancm-spec.md §3.2 has "check the system event log" here).
		"<h2> Troubleshooting steps: </h2>\r\n        <ul>\r\n" +
			"            <li> Find the app's <code>start_failed</code> line in loopgate's log (<code>journalctl -u loopgate</code>, <code>docker logs</code> or the <code>--log-file</code>): it holds the command line, the exit status and the first output of the application process </li>\r\n" +
			"            <li> Run <code>loopgate status</code> on the server: it shows the app's state and its last start error </li>\r\n" +
			"            <li> The application process' stdout and stderr are in loopgate's log, each line with the app and its process ID; <code>stdoutLogEnabled=\"true\"</code> in web.config writes them to files instead </li>\r\n" +
			"            <li> Run the command from that log line by hand, in the app's directory and with <code>ASPNETCORE_PORT</code> set: the app must listen on 127.0.0.1 at that port </li>\r\n" +
			"        </ul>",
		"visit\r\n             <a href=\"https://go.microsoft.com/fwlink/?LinkID=2028526\"> <cite>Troubleshoot ASP.NET Core on Azure App Service and IIS</cite></a>.",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("502.5 page lacks %q", want)
		}
	}
	if !strings.HasSuffix(page, "</html>\r\n") || strings.HasSuffix(page, "\r\n\r\n") {
		t.Errorf("502.5 page must end with exactly </html>\\r\\n: %q", page[len(page)-20:])
	}
	if strings.Contains(page, "event log") {
		t.Error("the 502.5 page sends a Linux operator to the event log")
	}

	// The step about the app's output follows its settings.
	h.setSpec("/", func(s *configload.AppSpec) { s.StdoutLogEnabled = true })
	_, body = c.roundTrip(get("a", "/"))
	if want := "<li> Read the application process' stdout log: one file per start, named after <code>stdoutLogFile</code> in web.config with the start time and the process ID </li>"; !strings.Contains(string(body), want) {
		t.Errorf("stdoutLogEnabled: the page lacks %q:\n%s", want, body)
	}
	h.setSpec("/", func(s *configload.AppSpec) { s.StdoutLogEnabled, s.ConsoleRedirection = true, false })
	_, body = c.roundTrip(get("a", "/"))
	if want := "<li> The application process' stdout and stderr are discarded (<code>enableOutOfProcessConsoleRedirection=\"false\"</code> in web.config); without that setting they are in loopgate's log </li>"; !strings.Contains(string(body), want) {
		t.Errorf("console redirection off: the page lacks %q:\n%s", want, body)
	}
	h.setSpec("/", func(s *configload.AppSpec) { s.StdoutLogEnabled, s.ConsoleRedirection = false, true })

	h.setSpec("/", func(s *configload.AppSpec) { s.AdditionalErrorPageLink = "http://example/more" })
	_, body = c.roundTrip(get("a", "/"))
	if want := `visit` + "\r\n" + `            <a href="http://example/more"> <cite> http://example/more </cite></a> and  <a href="https://go.microsoft.com/fwlink/?LinkID=2028526">`; !strings.Contains(string(body), want) {
		t.Errorf("ANCM_ADDITIONAL_ERROR_PAGE_LINK not inserted before the troubleshooting link:\n%s", body)
	}

	h.setSpec("/", func(s *configload.AppSpec) { s.DisableStartUpErrorPage = true })
	r, body = c.roundTrip(get("a", "/"))
	if r.StatusCode != 502 || len(body) != 0 {
		t.Errorf("disableStartUpErrorPage: %d with %d body bytes, want a bare 502", r.StatusCode, len(body))
	}
}

func TestOfflineAndStopping(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	h.apps["/"].offline = []byte("<html>down for maintenance</html>")
	h.apps["/"].setOutcome(supervisor.Offline)
	c := dialRaw(t, h.addr)
	r, body := c.roundTrip(get("a", "/"))
	if r.StatusCode != 503 || r.Header.Get("Content-Type") != "text/html" || string(body) != "<html>down for maintenance</html>" {
		t.Errorf("offline: %d %q %q", r.StatusCode, r.Header.Get("Content-Type"), body)
	}
	h.apps["/"].setOutcome(supervisor.Stopping)
	r, body = c.roundTrip(get("a", "/"))
	if r.StatusCode != 503 || len(body) != 0 {
		t.Errorf("stopping: %d %q, want a bare 503", r.StatusCode, body)
	}
	// Stopped by an operator: HTTP.sys's page for a stopped pool.
	h.apps["/"].setOutcome(supervisor.Stopped)
	r, body = c.roundTrip(get("a", "/"))
	if r.StatusCode != 503 || r.Header.Get("Content-Type") != "text/html" || !bytes.Equal(body, pageServiceUnavailable) ||
		!bytes.Contains(body, []byte("<h2>Service Unavailable</h2>")) {
		t.Errorf("stopped: %d %q %q", r.StatusCode, r.Header.Get("Content-Type"), body)
	}
}

func TestRouting(t *testing.T) {
	h := newHarness(t, Config{}, "/", "/api", "/api/v2")
	var got [3]chan rawRequest
	for i, vp := range []string{"/", "/api", "/api/v2"} {
		var addr string
		addr, got[i] = capturingBackend(t, okResponse)
		h.backend(vp, addr)
	}
	c := dialRaw(t, h.addr)
	for _, tc := range []struct {
		target string
		app    int
	}{
		{"/", 0}, {"/apix", 0}, {"/api", 1}, {"/api/", 1}, {"/API/x", 1}, {"/api?q", 1},
		{"/api/v2", 2}, {"/api/v2/x", 2}, {"/api/v20", 1}, {"http://host/api/v2/z", 2}, {"*", 0},
	} {
		method := "GET"
		if tc.target == "*" {
			method = "OPTIONS"
		}
		if r, _ := c.roundTrip(method + " " + tc.target + " HTTP/1.1\r\nHost: a\r\n\r\n"); r.StatusCode != 200 {
			t.Fatalf("%s: status %d", tc.target, r.StatusCode)
		}
		req := recv(t, got[tc.app])
		if !strings.Contains(req.lines()[0], " "+tc.target+" ") {
			t.Errorf("%s went to app %d with %q", tc.target, tc.app, req.lines()[0])
		}
	}

	h2 := newHarness(t, Config{}, "/api")
	c2 := dialRaw(t, h2.addr)
	if r, _ := c2.roundTrip(get("a", "/other")); r.StatusCode != 404 {
		t.Errorf("no app for /other: %d, want 404", r.StatusCode)
	}
}

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
		case "/trickle": // 10 × 60 ms = 600 ms total, against a 200 ms timeout
			for i := 0; i < 10; i++ {
				io.WriteString(w, "x")
				w.(http.Flusher).Flush()
				time.Sleep(60 * time.Millisecond)
			}
		case "/silent":
			time.Sleep(600 * time.Millisecond)
		case "/stall":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
			time.Sleep(600 * time.Millisecond)
		}
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	h.backend("/", backend.Listener.Addr().String())
	h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = 200 * time.Millisecond })
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

// TestRetryRules: a refused connect is retried once on another slot; a stale
// pooled connection is retried for an idempotent bodiless request; a
// request that reached the backend is never sent twice.
func TestRetryRules(t *testing.T) {
	t.Run("refused connect goes to the next slot", func(t *testing.T) {
		deadAddr := refusedAddr(t)
		addr, got := capturingBackend(t, okResponse)
		h := newHarness(t, Config{}, "/")
		bDead := h.backend("/", deadAddr)
		bLive := h.backend("/", addr)
		c := dialRaw(t, h.addr)
		r, _ := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
		if r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		if req := recv(t, got); string(req.body) != "abc" {
			t.Errorf("body %q", req.body)
		}
		// Release happens when the response is done, just after the client read it.
		waitFor(t, func() bool { return bLive.released.Load() == 1 }, "live backend released")
		if bDead.unreachable.Load() != 1 || bDead.released.Load() != bDead.acquired.Load() || bLive.released.Load() != 1 {
			t.Errorf("dead: unreachable %d acquired %d released %d; live released %d",
				bDead.unreachable.Load(), bDead.acquired.Load(), bDead.released.Load(), bLive.released.Load())
		}
		// /status counts served requests: the dead one served none.
		if bDead.unused.Load() != bDead.released.Load() || bLive.unused.Load() != 0 {
			t.Errorf("released unused: dead %d of %d, live %d", bDead.unused.Load(), bDead.released.Load(), bLive.unused.Load())
		}
		if i := h.obs.wait(t, 1); !i.Retried || i.PID != bLive.pid {
			t.Errorf("observer %+v", i)
		}
	})

	t.Run("both slots refused: 502.3", func(t *testing.T) {
		deadAddr := refusedAddr(t)
		h := newHarness(t, Config{}, "/")
		b := h.backend("/", deadAddr)
		c := dialRaw(t, h.addr)
		r, body := c.roundTrip(get("a", "/"))
		if r.StatusCode != 502 || !strings.Contains(string(body), "HTTP Error 502.3") {
			t.Errorf("%d %q", r.StatusCode, body)
		}
		// The retry is handed the same (only) process and asks again a
		// bounded number of times before it tries it: every acquire is
		// released, and two connects were made.
		waitFor(t, func() bool { return b.released.Load() == b.acquired.Load() }, "every acquire released")
		if b.unreachable.Load() != 2 || b.acquired.Load() != 2+sameBackendRetries {
			t.Errorf("unreachable %d acquired %d, want 2 and %d", b.unreachable.Load(), b.acquired.Load(), 2+sameBackendRetries)
		}
	})

	t.Run("a retry does not go back to the process that just failed", func(t *testing.T) {
		deadAddr := refusedAddr(t)
		addr, got := capturingBackend(t, okResponse)
		h := newHarness(t, Config{}, "/")
		bDead := h.backend("/", deadAddr)
		h.backend("/", addr)
		// The retry's first acquire gets the dead process again, as it
		// does when the supervisor has not yet seen it die.
		h.apps["/"].next.Store(0)
		bs := h.apps["/"].list()
		h.apps["/"].setBackends(bs[0], bDead, bs[1])
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		recv(t, got)
		if n := bDead.unreachable.Load(); n != 1 {
			t.Errorf("dead process tried %d times, want 1", n)
		}
	})

	t.Run("POST never goes out on a connection the backend already closed", func(t *testing.T) {
		var posts atomic.Int64
		closer := rawBackend(t, func(c net.Conn) {
			r, err := readRawRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			if strings.HasPrefix(r.head, "POST") {
				posts.Add(1)
			}
			io.WriteString(c, okResponse) // keep-alive claimed, then closed
		})
		h := newHarness(t, Config{}, "/")
		h.backend("/", closer)
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatal(r.StatusCode)
		}
		time.Sleep(50 * time.Millisecond) // the backend's FIN reaches the pooled connection
		if r, _ := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"); r.StatusCode != 200 {
			t.Errorf("POST after the pooled connection was closed: %d", r.StatusCode)
		}
		if i := h.obs.wait(t, 2); i.Retried || posts.Load() != 1 {
			t.Errorf("retried %v, backend saw %d POSTs; want a fresh connection up front", i.Retried, posts.Load())
		}
	})

	// A backend that keeps the connection after a response, then closes it
	// when the next request arrives without answering: a stale pool entry
	// as seen from loopgate.
	var seen atomic.Int64
	stale := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readRawRequest(br); err != nil {
			return
		}
		seen.Add(1)
		io.WriteString(c, okResponse)
		// Drop the next request on the floor.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := readRawRequest(br); err == nil {
			seen.Add(1)
		}
	})

	t.Run("idempotent request on a connection that dies is retried", func(t *testing.T) {
		seen.Store(0)
		h := newHarness(t, Config{}, "/")
		h.backend("/", stale)
		c := dialRaw(t, h.addr)
		for i := 0; i < 2; i++ {
			if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, r.StatusCode)
			}
		}
		if i := h.obs.wait(t, 2); !i.Retried {
			t.Errorf("second request not marked retried: %+v", i)
		}
	})

	t.Run("idempotent request whose backend died before answering is resent, body and all", func(t *testing.T) {
		var conns atomic.Int64
		bodies := make(chan string, 4)
		dies := rawBackend(t, func(c net.Conn) {
			r, err := readRawRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			bodies <- string(r.body)
			if conns.Add(1)%2 == 1 {
				return // read it, then die without a byte of answer
			}
			io.WriteString(c, okResponse)
		})
		h := newHarness(t, Config{}, "/")
		h.backend("/", dies)
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"); r.StatusCode != 200 {
			t.Fatalf("PUT whose first backend connection died: %d, want 200", r.StatusCode)
		}
		if a, b := recv(t, bodies), recv(t, bodies); a != "abc" || b != "abc" {
			t.Errorf("bodies %q and %q, want abc twice", a, b)
		}
		if i := h.obs.wait(t, 1); !i.Retried {
			t.Errorf("not marked retried: %+v", i)
		}
	})

	t.Run("non-idempotent request that reached the backend is not resent", func(t *testing.T) {
		seen.Store(0)
		h := newHarness(t, Config{}, "/")
		h.backend("/", stale)
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatal(r.StatusCode)
		}
		r, _ := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
		if r.StatusCode != 502 {
			t.Errorf("POST whose connection died after it was read: %d, want 502", r.StatusCode)
		}
		if n := seen.Load(); n != 2 {
			t.Errorf("backend saw %d requests, want 2 (the POST once)", n)
		}
	})
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
