package fastpath

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/configload"
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

// TestResponseRulesAnyCase: the hop-by-hop and replaced response headers
// are dropped whatever the case of the backend's names (filterResponseHead
// deletes them by their canonical names, which the head was read into).
func TestResponseRulesAnyCase(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\n" +
		"date: Mon, 01 Jan 2001 00:00:00 GMT\r\nKEEP-ALIVE: timeout=5\r\nproxy-CONNECTION: keep-alive\r\n" +
		"trailer: X-Sum\r\nconnection: keep-alive\r\nx-kept: 1\r\nContent-Length: 2\r\n\r\nok"
	h := newHarness(t, Config{}, "/")
	addr, _ := capturingBackend(t, resp)
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	for i := 0; i < 2; i++ { // the second on a response header fasthttp reuses
		r, body := c.roundTrip(get("a", "/"))
		if r.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("request %d: %d %q", i, r.StatusCode, body)
		}
		if d := r.Header.Values("Date"); len(d) != 1 || strings.Contains(d[0], "2001") {
			t.Errorf("request %d: Date %q: want loopgate's own, once", i, d)
		}
		for _, hop := range []string{"Keep-Alive", "Proxy-Connection", "Trailer", "Connection"} {
			if v := r.Header.Values(hop); len(v) > 0 {
				t.Errorf("request %d: %s reached the client: %q", i, hop, v)
			}
		}
		if r.Header.Get("X-Kept") != "1" {
			t.Errorf("request %d: x-kept lost: %v", i, r.Header)
		}
	}
}

// TestResponseConnectionBoth: an app that sends Connection: keep-alive and
// Connection: close gets neither to the client, and the fields after them
// keep their order. fasthttp keeps the first as a field and the second as
// a flag, and resetting the flag deleted the field by moving the last one
// into its place: X-Dup: 2 came before X-Dup: 1.
func TestResponseConnectionBoth(t *testing.T) {
	addr, _ := capturingBackend(t, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-Dup: 1\r\nX-Dup: 2\r\n"+
		"Connection: close\r\nContent-Length: 2\r\n\r\nok")
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	r, body := c.roundTrip(get("a", "/"))
	if r.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("%d %q", r.StatusCode, body)
	}
	if v := r.Header.Values("Connection"); len(v) > 0 || r.Close {
		t.Errorf("Connection reached the client: %q (close %v)", v, r.Close)
	}
	if v := r.Header.Values("X-Dup"); !slices.Equal(v, []string{"1", "2"}) {
		t.Errorf("X-Dup %q, want [1 2]", v)
	}
}

// TestResponseFieldOrder: the fields of a response reach the client in the
// order the app sent them, same-name fields above all (RFC 9110 §5.3:
// WWW-Authenticate's order is the app's preference), with the hop-by-hop
// ones and Date dropped from among them. fasthttp's Del moved the last
// field into a deleted one's place: a head ending in X-Dup: 1, X-Dup: 2
// with a Date before them reached the client as 2, 1. Against a raw app,
// Go's net/http, and Node's http module, which sends Connection:
// keep-alive and Keep-Alive among its fields.
func TestResponseFieldOrder(t *testing.T) {
	const rawResp = "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nConnection: keep-alive\r\n" +
		"WWW-Authenticate: Negotiate\r\nKeep-Alive: timeout=5\r\nWWW-Authenticate: NTLM\r\nX-A: 1\r\n" +
		"Link: <a>; rel=preload\r\nX-B: 1\r\nLink: <b>; rel=preload\r\nX-Dup: 1\r\nX-Dup: 2\r\nContent-Length: 2\r\n\r\nok"
	raw, _ := capturingBackend(t, rawResp)
	goApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Www-Authenticate"] = []string{"Negotiate", "NTLM"}
		h["Link"] = []string{"<a>; rel=preload", "<b>; rel=preload"}
		h["X-Dup"] = []string{"1", "2"}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(goApp.Close)
	apps := map[string]string{"raw": raw, "net/http": strings.TrimPrefix(goApp.URL, "http://")}
	if addr, ok := startNodeApp(t, fieldOrderNode); ok {
		apps["node"] = addr
	}
	for name, addr := range apps {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Config{}, "/")
			h.backend("/", addr)
			c := dialRaw(t, h.addr)
			for i := range 2 { // the second on a response header fasthttp reuses
				c.send(get("a", "/"))
				var lines []string
				for {
					l, err := c.br.ReadString('\n')
					if err != nil {
						t.Fatal(err)
					}
					if l == "\r\n" {
						break
					}
					lines = append(lines, strings.TrimRight(l, "\r\n"))
				}
				if _, err := c.br.Discard(2); err != nil { // "ok"
					t.Fatal(err)
				}
				var fields []string // the ordinary fields, in order
				byName := map[string][]string{}
				dates := 0
				for _, l := range lines[1:] {
					k, v, _ := strings.Cut(l, ": ")
					switch k = strings.ToLower(k); k {
					case "date":
						dates++
						if strings.Contains(v, "2001") {
							t.Errorf("request %d: the app's Date reached the client", i)
						}
					case "connection", "keep-alive":
						t.Errorf("request %d: %s reached the client", i, l)
					case "content-length", "content-type", "server":
					default:
						fields = append(fields, k+": "+v)
						byName[k] = append(byName[k], v)
					}
				}
				if dates != 1 {
					t.Errorf("request %d: %d Date fields, want loopgate's once", i, dates)
				}
				for k, want := range map[string][]string{"www-authenticate": {"Negotiate", "NTLM"},
					"link": {"<a>; rel=preload", "<b>; rel=preload"}, "x-dup": {"1", "2"}} {
					if !slices.Equal(byName[k], want) {
						t.Errorf("request %d: %s %q, want %q\n%s", i, k, byName[k], want, strings.Join(lines, "\n"))
					}
				}
				// The raw app's whole order (net/http sorts its names).
				want := []string{"www-authenticate: Negotiate", "www-authenticate: NTLM", "x-a: 1", "link: <a>; rel=preload",
					"x-b: 1", "link: <b>; rel=preload", "x-dup: 1", "x-dup: 2"}
				if name == "raw" && !slices.Equal(fields, want) {
					t.Errorf("request %d: fields %q, want %q", i, fields, want)
				}
			}
		})
	}
}

// fieldOrderNode is TestResponseFieldOrder's Node.js app.
const fieldOrderNode = `
const http = require('http');
const srv = http.createServer((req, res) => {
  res.setHeader('WWW-Authenticate', ['Negotiate', 'NTLM']);
  res.setHeader('Link', ['<a>; rel=preload', '<b>; rel=preload']);
  res.setHeader('X-Dup', ['1', '2']);
  res.setHeader('Content-Length', '2');
  res.end('ok');
});
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
`

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

// TestHTTP10Backend: a backend that answers in HTTP/1.0 reaches the client
// in HTTP/1.1, status and reason phrase kept, and the connection carries
// the next request.
func TestHTTP10Backend(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.0 203 Fine Here\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi")
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	for i := range 2 {
		r, body := c.roundTrip(get("a", "/"))
		if r.Proto != "HTTP/1.1" || r.Status != "203 Fine Here" || string(body) != "hi" {
			t.Errorf("request %d: %s %q %q", i, r.Proto, r.Status, body)
		}
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
