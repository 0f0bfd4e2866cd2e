package pairing_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/loopgate/loopgate/pairing"
	"github.com/loopgate/loopgate/pairing/fastpairing"
)

const testToken = "0f8fad5b-d9cb-469f-a165-70867728950e"

// Header names as net/http canonicalizes them.
const (
	hdrToken         = "Ms-Aspnetcore-Token"
	hdrEvent         = "Ms-Aspnetcore-Event"
	hdrForwardedFor  = "X-Forwarded-For"
	hdrForwardedProt = "X-Forwarded-Proto"
	hdrOriginalFor   = "X-Original-For"
	hdrOriginalProto = "X-Original-Proto"
)

var hostedRoot = pairing.Config{Port: "5000", ApplPath: "/", Token: testToken}

// seen is the request as the app saw it.
type seen struct {
	remote, scheme, base, path string
	hdr                        map[string]string // joined values, "" when absent
}

// watched are the headers every case records.
var watched = []string{hdrToken, hdrForwardedFor, hdrForwardedProt, hdrOriginalFor, hdrOriginalProto, hdrEvent}

type pcase struct {
	name    string
	cfg     *pairing.Config // nil: hostedRoot
	method  string          // "": GET
	target  string
	peer    string // "": 127.0.0.1:40000
	noToken bool   // do not send the right token first
	headers [][2]string

	logHas   []string // fragments the log must hold
	status   int      // 0: the app answered (200)
	wantStop bool     // Options.Stop must run
	// what the app sees, checked when it ran; "" remote/scheme/path use the defaults
	remote, scheme, base, path string
	hdr                        map[string]string
}

const defaultPeer = "127.0.0.1:40000"

func (c pcase) config() pairing.Config {
	if c.cfg == nil {
		return hostedRoot
	}
	return *c.cfg
}

func (c pcase) requestHeaders() [][2]string {
	if c.noToken {
		return c.headers
	}
	return append([][2]string{{"MS-ASPNETCORE-TOKEN", testToken}}, c.headers...)
}

func cases() []pcase {
	appAt := func(p string) *pairing.Config { c := hostedRoot; c.ApplPath = p; return &c }
	notHosted := &pairing.Config{Port: "5000", ApplPath: "/app"} // no token
	xff := func(v string) [2]string { return [2]string{"X-Forwarded-For", v} }
	xfp := func(v string) [2]string { return [2]string{"X-Forwarded-Proto", v} }
	event := func(v string) [2]string { return [2]string{"MS-ASPNETCORE-EVENT", v} }
	shutdown := event("shutdown")

	cs := []pcase{
		{name: "valid token reaches the app, token header removed", target: "/hello?x=1", path: "/hello"},
		{name: "missing token", noToken: true, target: "/", status: 400, logHas: []string{`"reason":"missing"`, `"path":"/"`}},
		{name: "wrong token", noToken: true, headers: [][2]string{{"MS-ASPNETCORE-TOKEN", "0f8fad5b-d9cb-469f-a165-70867728950f"}}, target: "/x", status: 400,
			logHas: []string{`"reason":"mismatch"`, `"received_len":36`, `"received_sha256_prefix":"`, `"path":"/x"`, `"remote":"127.0.0.1:40000"`}},
		{name: "token compared ordinally", noToken: true, headers: [][2]string{{"MS-ASPNETCORE-TOKEN", strings.ToUpper(testToken)}}, target: "/", status: 400},
		{name: "token prefix", noToken: true, headers: [][2]string{{"MS-ASPNETCORE-TOKEN", testToken[:35]}}, target: "/", status: 400},
		{name: "empty token", noToken: true, headers: [][2]string{{"MS-ASPNETCORE-TOKEN", ""}}, target: "/", status: 400},
		{name: "two token headers", headers: [][2]string{{"MS-ASPNETCORE-TOKEN", testToken}}, target: "/", status: 400,
			logHas: []string{`"reason":"sent more than once"`, `"values":2`}},
		{name: "token list in one header", noToken: true, headers: [][2]string{{"MS-ASPNETCORE-TOKEN", testToken + "," + testToken}}, target: "/", status: 400},
		{name: "token checked on the shutdown path too", noToken: true, method: "GET", target: "/iisintegration", status: 400},

		{name: "shutdown", method: "POST", target: "/iisintegration", headers: [][2]string{shutdown}, status: 202, wantStop: true},
		{name: "shutdown any case", method: "POST", target: "/IISIntegration", headers: [][2]string{event("SHUTDOWN")}, status: 202, wantStop: true},
		{name: "shutdown wrong token", method: "POST", target: "/iisintegration", noToken: true,
			headers: [][2]string{{"MS-ASPNETCORE-TOKEN", "nope"}, shutdown}, status: 400},
		{name: "shutdown missing token", method: "POST", target: "/iisintegration", noToken: true, headers: [][2]string{shutdown}, status: 400},
		{name: "shutdown wrong event", method: "POST", target: "/iisintegration", headers: [][2]string{event("event")}, path: "/iisintegration",
			hdr: map[string]string{hdrEvent: "event"}},
		{name: "shutdown empty event", method: "POST", target: "/iisintegration", headers: [][2]string{event("")}, path: "/iisintegration"},
		{name: "shutdown missing event", method: "POST", target: "/iisintegration", path: "/iisintegration"},
		{name: "shutdown two events", method: "POST", target: "/iisintegration", headers: [][2]string{shutdown, shutdown}, path: "/iisintegration",
			hdr: map[string]string{hdrEvent: "shutdown, shutdown"}},
		{name: "shutdown under the path base", cfg: appAt("/app"), method: "POST", target: "/APP/iisintegration", headers: [][2]string{shutdown}, status: 202, wantStop: true},
		{name: "shutdown path outside the base is still the shutdown path (as ASP.NET Core)", cfg: appAt("/app"), method: "POST", target: "/iisintegration",
			headers: [][2]string{shutdown}, status: 202, wantStop: true},
		{name: "shutdown path below the root is not", cfg: appAt("/app"), method: "POST", target: "/app/x/iisintegration", headers: [][2]string{shutdown},
			base: "/app", path: "/x/iisintegration", hdr: map[string]string{hdrEvent: "shutdown"}},

		{name: "path base stripped, case-insensitive", cfg: appAt("/pathbase"), target: "/PathBase/Path", base: "/PathBase", path: "/Path"},
		{name: "path base alone", cfg: appAt("/pathbase"), target: "/pathbase", base: "/pathbase", path: "/"},
		{name: "path base with trailing slash", cfg: appAt("/pathbase/"), target: "/pathbase/", base: "/pathbase", path: "/"},
		{name: "path base nested", cfg: appAt("/a/b"), target: "/A/B/c/d", base: "/A/B", path: "/c/d"},
		{name: "path base on segment boundary only", cfg: appAt("/pathbase"), target: "/pathbasex/y", path: "/pathbasex/y"},
		{name: "outside the path base", cfg: appAt("/pathbase"), target: "/other", path: "/other"},
		{name: "path base with escaped remainder", cfg: appAt("/app"), target: "/app/a%20b", base: "/app", path: "/a b"},
		{name: "path base with escaped percent", cfg: appAt("/app"), target: "/app/100%25", base: "/app", path: "/100%"},
		{name: "path base with escaped slash", cfg: appAt("/app"), target: "/app/a%2Fb", base: "/app", path: "/a/b"},
		{name: "escaped path base", cfg: appAt("/app"), target: "/%61pp/x", base: "/app", path: "/x"},

		{name: "X-Forwarded-For from loopback", headers: [][2]string{xff("203.0.113.7:5555")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrOriginalFor: defaultPeer}},
		{name: "right-most X-Forwarded-For entry only", headers: [][2]string{xff("198.51.100.1, 203.0.113.7:5555")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrForwardedFor: "198.51.100.1", hdrOriginalFor: defaultPeer}},
		{name: "X-Forwarded-For over two lines", headers: [][2]string{xff("198.51.100.1, 198.51.100.2"), xff("203.0.113.7:5555")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrForwardedFor: "198.51.100.1, 198.51.100.2", hdrOriginalFor: defaultPeer}},
		{name: "X-Forwarded-For trailing empty entries", headers: [][2]string{xff("198.51.100.1 , 203.0.113.7:5555 , ")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrForwardedFor: "198.51.100.1", hdrOriginalFor: defaultPeer}},
		{name: "X-Forwarded-For IPv6 with port", headers: [][2]string{xff("[2001:db8::1]:443")}, target: "/",
			remote: "[2001:db8::1]:443", hdr: map[string]string{hdrOriginalFor: defaultPeer}},
		{name: "X-Forwarded-For bare IPv6", headers: [][2]string{xff("2001:db8::1")}, target: "/",
			remote: "[2001:db8::1]:0", hdr: map[string]string{hdrOriginalFor: defaultPeer}},
		{name: "X-Forwarded-For bracketed IPv6 without port", headers: [][2]string{xff("[2001:db8::2]")}, target: "/",
			remote: "[2001:db8::2]:0", hdr: map[string]string{hdrOriginalFor: defaultPeer}},
		{name: "X-Forwarded-For bare IPv4", headers: [][2]string{xff("203.0.113.7")}, target: "/",
			remote: "203.0.113.7:0", hdr: map[string]string{hdrOriginalFor: defaultPeer}},
		{name: "IPv6 loopback peer is trusted", peer: "[::1]:40001", headers: [][2]string{xff("203.0.113.7:5555"), xfp("https")}, target: "/",
			remote: "203.0.113.7:5555", scheme: "https", hdr: map[string]string{hdrOriginalFor: "[::1]:40001", hdrOriginalProto: "http"}},
		{name: "other 127/8 peer is trusted", peer: "127.0.0.2:40000", headers: [][2]string{xff("203.0.113.7:5555")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrOriginalFor: "127.0.0.2:40000"}},
		{name: "non-loopback peer: forwarded headers ignored", peer: "192.0.2.10:40000",
			headers: [][2]string{xff("203.0.113.7:5555"), xfp("https")}, target: "/",
			remote: "192.0.2.10:40000", hdr: map[string]string{hdrForwardedFor: "203.0.113.7:5555", hdrForwardedProt: "https"}},
		{name: "non-loopback IPv6 peer: forwarded headers ignored", peer: "[2001:db8::9]:40000",
			headers: [][2]string{xff("203.0.113.7:5555")}, target: "/",
			remote: "[2001:db8::9]:40000", hdr: map[string]string{hdrForwardedFor: "203.0.113.7:5555"}},
		{name: "X-Forwarded-Proto", headers: [][2]string{xfp("https")}, target: "/",
			scheme: "https", hdr: map[string]string{hdrOriginalProto: "http"}},
		{name: "X-Forwarded-Proto right-most, lowercased", headers: [][2]string{xfp("http, HTTPS")}, target: "/",
			scheme: "https", hdr: map[string]string{hdrForwardedProt: "http", hdrOriginalProto: "http"}},
		{name: "invalid X-Forwarded-Proto ignored", headers: [][2]string{xff("203.0.113.7:5555"), xfp("ht/tp")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrForwardedProt: "ht/tp", hdrOriginalFor: defaultPeer}},
		{name: "unparsable X-Forwarded-For stops everything", headers: [][2]string{xff("unknown"), xfp("https")}, target: "/",
			hdr: map[string]string{hdrForwardedFor: "unknown", hdrForwardedProt: "https"}},
		{name: "abbreviated IPv4 is not an address", headers: [][2]string{xff("1")}, target: "/",
			hdr: map[string]string{hdrForwardedFor: "1"}},
		{name: "client's X-Original-For replaced", headers: [][2]string{{"X-Original-For", "6.6.6.6:1"}, xff("203.0.113.7:5555")}, target: "/",
			remote: "203.0.113.7:5555", hdr: map[string]string{hdrOriginalFor: defaultPeer}},
		{name: "forwarded headers applied before the path base check", cfg: appAt("/app"), headers: [][2]string{xff("203.0.113.7:5555"), xfp("https")},
			target: "/app/x", base: "/app", path: "/x", remote: "203.0.113.7:5555", scheme: "https",
			hdr: map[string]string{hdrOriginalFor: defaultPeer, hdrOriginalProto: "http"}},

		{name: "not hosted: no token needed, nothing rewritten", cfg: notHosted, noToken: true,
			headers: [][2]string{xff("203.0.113.7:5555"), xfp("https")}, target: "/app/x", path: "/app/x",
			hdr: map[string]string{hdrForwardedFor: "203.0.113.7:5555", hdrForwardedProt: "https"}},
		{name: "not hosted: shutdown request reaches the app", cfg: notHosted, noToken: true, method: "POST",
			headers: [][2]string{{"MS-ASPNETCORE-TOKEN", "x"}, shutdown}, target: "/iisintegration", path: "/iisintegration",
			hdr: map[string]string{hdrToken: "x", hdrEvent: "shutdown"}},
	}
	for _, method := range []string{"PUT", "TRACE", "HEAD", "GET", "DELETE", "OPTIONS", "PATCH"} {
		cs = append(cs, pcase{name: "shutdown wrong method " + method, method: method, target: "/iisintegration",
			headers: [][2]string{shutdown}, path: "/iisintegration", hdr: map[string]string{hdrEvent: "shutdown"}})
	}
	for _, p := range []string{"/", "/path", "/path/iisintegration", "/iisintegration/x", "/iisintegrationx"} {
		cs = append(cs, pcase{name: "shutdown wrong path " + p, method: "POST", target: p,
			headers: [][2]string{shutdown}, path: p, hdr: map[string]string{hdrEvent: "shutdown"}})
	}
	return cs
}

// result is what one flavour observed for one case.
type result struct {
	status int
	body   string
	ran    bool
	app    seen
}

// flavour serves one case through one middleware flavour.
type flavour func(t *testing.T, c pcase, opts pairing.Options) result

func TestMiddleware(t *testing.T) {
	for _, fl := range []struct {
		name string
		run  flavour
	}{{"net/http", runNetHTTP}, {"fasthttp", runFast}} {
		t.Run(fl.name, func(t *testing.T) {
			for _, c := range cases() {
				t.Run(c.name, func(t *testing.T) { checkCase(t, c, fl.run) })
			}
		})
	}
}

func checkCase(t *testing.T, c pcase, run flavour) {
	var logBuf syncBuffer
	stopped := make(chan struct{}, 4)
	opts := pairing.Options{Stop: func() { stopped <- struct{}{} }, Log: zerolog.New(&logBuf)}
	res := run(t, c, opts)

	wantStatus := c.status
	if wantStatus == 0 {
		wantStatus = 200
	}
	if res.status != wantStatus {
		t.Fatalf("status %d, want %d (body %q)", res.status, wantStatus, res.body)
	}
	if c.status != 0 {
		if res.ran {
			t.Errorf("the app ran for a %d answer", c.status)
		}
		if res.body != "" {
			t.Errorf("body %q, want empty", res.body)
		}
	} else {
		checkSeen(t, c, res.app)
	}
	if c.wantStop {
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("Stop was not called after the shutdown request")
		}
	} else {
		select {
		case <-stopped:
			t.Error("Stop was called")
		case <-time.After(10 * time.Millisecond):
		}
	}

	logged := logBuf.String()
	if strings.Contains(logged, testToken) {
		t.Errorf("the expected token appears in the log:\n%s", logged)
	}
	if c.status == 400 && !strings.Contains(logged, "request rejected") {
		t.Errorf("rejection not logged; log:\n%s", logged)
	}
	for _, frag := range c.logHas {
		if !strings.Contains(logged, frag) {
			t.Errorf("log lacks %s:\n%s", frag, logged)
		}
	}
	if c.status != 400 && strings.Contains(logged, "rejected") {
		t.Errorf("unexpected rejection log:\n%s", logged)
	}
}

func checkSeen(t *testing.T, c pcase, got seen) {
	t.Helper()
	want := seen{remote: c.remote, scheme: c.scheme, base: c.base, path: c.path}
	if want.remote == "" {
		want.remote = c.peer
		if want.remote == "" {
			want.remote = defaultPeer
		}
	}
	if want.scheme == "" {
		want.scheme = "http"
	}
	if want.path == "" {
		want.path = "/"
	}
	if got.remote != want.remote || got.scheme != want.scheme || got.base != want.base || got.path != want.path {
		t.Errorf("app saw remote=%q scheme=%q base=%q path=%q; want remote=%q scheme=%q base=%q path=%q",
			got.remote, got.scheme, got.base, got.path, want.remote, want.scheme, want.base, want.path)
	}
	for _, k := range watched {
		if got.hdr[k] != c.hdr[k] {
			t.Errorf("app saw %s %q, want %q", k, got.hdr[k], c.hdr[k])
		}
	}
}

// runNetHTTP drives the net/http flavour with a recorder, which lets the
// test choose the peer address.
func runNetHTTP(t *testing.T, c pcase, opts pairing.Options) result {
	var res result
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res.ran = true
		res.app = seen{remote: r.RemoteAddr, scheme: pairing.Scheme(r), base: pairing.PathBase(r), path: r.URL.Path, hdr: map[string]string{}}
		for _, k := range watched {
			res.app.hdr[k] = strings.Join(r.Header.Values(k), ", ")
		}
		fmt.Fprint(w, "app")
	})
	method := c.method
	if method == "" {
		method = "GET"
	}
	r := httptest.NewRequest(method, "http://example.com"+c.target, nil)
	r.RemoteAddr = c.peer
	if r.RemoteAddr == "" {
		r.RemoteAddr = defaultPeer
	}
	for _, h := range c.requestHeaders() {
		r.Header.Add(h[0], h[1])
	}
	w := httptest.NewRecorder()
	c.config().Middleware(opts)(app).ServeHTTP(w, r)
	res.status, res.body = w.Code, w.Body.String()
	return res
}

// runFast drives the fasthttp flavour through a real fasthttp.Server on an
// in-memory listener; the dialer chooses the peer address the server sees.
func runFast(t *testing.T, c pcase, opts pairing.Options) result {
	var res result
	app := func(ctx *fasthttp.RequestCtx) {
		res.ran = true
		res.app = seen{remote: ctx.RemoteAddr().String(), scheme: string(ctx.URI().Scheme()), base: fastpairing.PathBase(ctx),
			path: string(ctx.Path()), hdr: map[string]string{}}
		for _, k := range watched {
			var vs []string
			for _, v := range ctx.Request.Header.PeekAll(k) {
				vs = append(vs, string(v))
			}
			res.app.hdr[k] = strings.Join(vs, ", ")
		}
		ctx.WriteString("app")
	}
	method := c.method
	if method == "" {
		method = "GET"
	}
	var raw strings.Builder
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: example.com\r\n", method, c.target)
	for _, h := range c.requestHeaders() {
		fmt.Fprintf(&raw, "%s: %s\r\n", h[0], h[1])
	}
	raw.WriteString("\r\n")

	peer := c.peer
	if peer == "" {
		peer = defaultPeer
	}
	resp := serveFastOnce(t, fastpairing.Middleware(c.config(), opts)(app), netip.MustParseAddrPort(peer), raw.String(), method == "HEAD")
	res.status, res.body = resp.StatusCode(), string(resp.Body())
	return res
}

// serveFastOnce sends one raw request to a fresh fasthttp.Server and
// returns the response once the server has finished with the connection.
func serveFastOnce(t *testing.T, h fasthttp.RequestHandler, peer netip.AddrPort, raw string, head bool) *fasthttp.Response {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	s := &fasthttp.Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("fasthttp server did not stop")
		}
	})
	conn, err := ln.DialWithLocalAddr(net.TCPAddrFromAddrPort(peer))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp := new(fasthttp.Response)
	resp.SkipBody = head
	if err := resp.Read(bufio.NewReader(conn)); err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger
// used by a server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRawPathKept: net/http keeps the escaped form of what remains.
func TestRawPathKept(t *testing.T) {
	cfg := hostedRoot
	cfg.ApplPath = "/app"
	var path, escaped string
	h := cfg.Middleware(pairing.Options{})(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		path, escaped = r.URL.Path, r.URL.EscapedPath()
	}))
	r := httptest.NewRequest("GET", "/App/a%2Fb/c", nil)
	r.Header.Set("MS-ASPNETCORE-TOKEN", testToken)
	h.ServeHTTP(httptest.NewRecorder(), r)
	if path != "/a/b/c" || escaped != "/a%2Fb/c" {
		t.Errorf("path %q escaped %q, want /a/b/c and /a%%2Fb/c", path, escaped)
	}
}
