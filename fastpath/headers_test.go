package fastpath

import (
	"bufio"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
)

// TestRequestHeaderRules sends raw requests through loopgate and checks the
// header block the backend received, line by line.
func TestRequestHeaderRules(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	addr, got := capturingBackend(t, okResponse)
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	peer := c.c.LocalAddr().String() // what loopgate sees as the client

	tests := []struct {
		name    string
		req     string
		present map[string][]string // header -> exact values, in order
		absent  []string
		check   func(t *testing.T, r rawRequest)
	}{
		{
			name:    "spoofed MS-ASPNETCORE-TOKEN is replaced by the backend's token",
			req:     "GET / HTTP/1.1\r\nHost: a\r\nMS-ASPNETCORE-TOKEN: forged\r\nms-aspnetcore-token: forged2\r\n\r\n",
			present: map[string][]string{"MS-ASPNETCORE-TOKEN": {"tok-1"}},
		},
		{
			name:    "spoofed MS-ASPNETCORE-EVENT shutdown never reaches the app",
			req:     "GET / HTTP/1.1\r\nHost: a\r\nMS-ASPNETCORE-EVENT: shutdown\r\nMs-AspNetCore-Whatever: x\r\n\r\n",
			absent:  []string{"MS-ASPNETCORE-EVENT", "Ms-AspNetCore-Whatever"},
			present: map[string][]string{"MS-ASPNETCORE-TOKEN": {"tok-1"}},
		},
		{
			name:   "client certificate header cannot be forged on plain HTTP",
			req:    "GET / HTTP/1.1\r\nHost: a\r\nMS-ASPNETCORE-CLIENTCERT: AAAA\r\n\r\n",
			absent: []string{"MS-ASPNETCORE-CLIENTCERT"},
		},
		{
			name: "X-Forwarded-For and -Proto are added",
			req:  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			present: map[string][]string{
				"X-Forwarded-For":   {peer},
				"X-Forwarded-Proto": {"http"},
			},
		},
		{
			name: "X-Forwarded-* append after existing values, merged into one line",
			req:  "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2, 3.3.3.3\r\nX-Forwarded-Proto: https\r\n\r\n",
			present: map[string][]string{
				"X-Forwarded-For":   {"1.1.1.1, 2.2.2.2, 3.3.3.3, " + peer},
				"X-Forwarded-Proto": {"https, http"},
			},
		},
		{
			name: "hop-by-hop headers and the ones Connection names are stripped",
			req: "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop, x-other\r\nX-Hop: 1\r\nX-Other: 2\r\n" +
				"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\n" +
				"Upgrade: h2c\r\nX-Kept: yes\r\n\r\n",
			absent:  []string{"Connection", "X-Hop", "X-Other", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade"},
			present: map[string][]string{"X-Kept": {"yes"}},
		},
		{
			name:    "Connection cannot strip Host",
			req:     "GET / HTTP/1.1\r\nHost: example.com:1234\r\nConnection: Host\r\n\r\n",
			present: map[string][]string{"Host": {"example.com:1234"}},
		},
		{
			name: "Host, cookies, repeated and odd headers pass byte for byte, in order",
			req: "GET / HTTP/1.1\r\nhost: Example.COM\r\nCookie: a=1;b=2;;  c\r\nX-Dup: 1\r\nx-dup: 2\r\n" +
				"X-Utf8: caf\xc3\xa9\r\nX-Empty:\r\n\r\n",
			check: func(t *testing.T, r rawRequest) {
				want := []string{"host: Example.COM", "Cookie: a=1;b=2;;  c", "X-Dup: 1", "x-dup: 2", "X-Utf8: caf\xc3\xa9", "X-Empty:"}
				lines := r.lines()[1:]
				if len(lines) < len(want) || !slices.Equal(lines[:len(want)], want) {
					t.Errorf("header lines\n got %q\nwant prefix %q", lines, want)
				}
			},
		},
		{
			name: "the fields around dropped ones pass byte for byte, in order",
			req: "GET / HTTP/1.1\r\nTE: trailers\r\nHost: a\r\nX-A: 1\r\nKeep-Alive: 5\r\nConnection: X-B\r\n" +
				"X-B: 2\r\nX-C:  3\r\nx-d:4\r\nProxy-Connection: keep-alive\r\n\r\n",
			check: func(t *testing.T, r rawRequest) {
				want := []string{"Host: a", "X-A: 1", "X-C:  3", "x-d:4", "X-Forwarded-For: " + peer}
				lines := r.lines()[1:]
				if len(lines) < len(want) || !slices.Equal(lines[:len(want)], want) {
					t.Errorf("header lines\n got %q\nwant prefix %q", lines, want)
				}
			},
		},
		{
			name: "request target is forwarded byte for byte, but for its dot segments (requestline.go)",
			req:  "GET /a/%2F/b/../c//d?x=%20&y=%3F/../#frag HTTP/1.1\r\nHost: a\r\n\r\n",
			check: func(t *testing.T, r rawRequest) {
				if want := "GET /a/%2F/c//d?x=%20&y=%3F/../#frag HTTP/1.1"; r.lines()[0] != want {
					t.Errorf("request line %q, want %q", r.lines()[0], want)
				}
			},
		},
		{
			name:    "Expect: 100-continue is answered by loopgate, not forwarded",
			req:     "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
			absent:  []string{"Expect"},
			present: map[string][]string{"Content-Length": {"2"}},
			check: func(t *testing.T, r rawRequest) {
				if string(r.body) != "hi" {
					t.Errorf("body %q", r.body)
				}
			},
		},
		{
			name:    "a chunked body is re-chunked",
			req:     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
			absent:  []string{"Content-Length", "X-Trailer"},
			present: map[string][]string{"Transfer-Encoding": {"chunked"}},
			check: func(t *testing.T, r rawRequest) {
				if string(r.body) != "abcde" {
					t.Errorf("body %q", r.body)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.send(tc.req)
			if strings.Contains(tc.req, "100-continue") {
				// loopgate's own interim response comes first
				line, err := c.br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
					t.Fatalf("interim %q %v", line, err)
				}
				if _, err := c.br.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
			}
			method, _, _ := strings.Cut(tc.req, " ")
			resp, _ := c.response(method)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			r := recv(t, got)
			for name, want := range tc.present {
				if v := r.values(name); !slices.Equal(v, want) {
					t.Errorf("%s: got %q, want %q\n%s", name, v, want, r.head)
				}
			}
			for _, name := range tc.absent {
				if v := r.values(name); len(v) > 0 {
					t.Errorf("%s reached the backend: %q\n%s", name, v, r.head)
				}
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestForwardedForFormats(t *testing.T) {
	for _, tc := range []struct {
		addr       net.Addr
		want, ipIs string // ipPort (the default), ip
	}{
		{&net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 51234}, "203.0.113.5:51234", "203.0.113.5"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:203.0.113.5"), Port: 1}, "203.0.113.5:1", "203.0.113.5"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 51234}, "[2001:db8::1]:51234", "2001:db8::1"},
	} {
		if got := string(appendForwardedFor(nil, tc.addr, configload.ForwardedForIPPort)); got != tc.want {
			t.Errorf("%v: got %q, want %q", tc.addr, got, tc.want)
		}
		if got := string(appendForwardedFor(nil, tc.addr, configload.ForwardedForIP)); got != tc.ipIs {
			t.Errorf("%v with forwardedForFormat=ip: got %q, want %q", tc.addr, got, tc.ipIs)
		}
	}
}

func TestForwardedForIPv6Client(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	h := newHarness(t, Config{}, "/")
	addr, got := capturingBackend(t, okResponse)
	h.backend("/", addr)
	go func() { _ = h.srv.ServeListener(ln, false) }()
	c := dialRaw(t, ln.Addr().String())
	resp, _ := c.roundTrip(get("a", "/"))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	port := c.c.LocalAddr().(*net.TCPAddr).Port
	if v := recv(t, got).values("X-Forwarded-For"); len(v) != 1 || v[0] != "[::1]:"+strconv.Itoa(port) {
		t.Errorf("X-Forwarded-For %q", v)
	}
}

// TestHeaderRewriteAllocs gates the header rewrite at zero allocations.
func TestHeaderRewriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	var req fasthttp.Request
	raw := "GET /some/path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n" +
		"Cookie: a=1; b=2\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n" +
		"MS-ASPNETCORE-TOKEN: forged\r\n\r\n"
	req.Header.DisableNormalizing()
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	in := headInput{token: "0f8fad5b-d9cb-469f-a165-70867728950e", remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, contentLength: -2}
	dst := make([]byte, 0, 1024)
	var ri reqInfo
	allocs := testing.AllocsPerRun(1000, func() {
		if err := scanRequestHeaders(req.Header.RawHeaders(), &ri); err != nil {
			t.Fatal(err)
		}
		dst = appendRequestHead(dst[:0], &req.Header, &ri, &in)
	})
	if allocs != 0 {
		t.Errorf("header rewrite: %v allocs per request, want 0", allocs)
	}
	if !strings.Contains(string(dst), "X-Forwarded-For: 10.0.0.1, 127.0.0.1:40000\r\n") || strings.Contains(string(dst), "X-Hop") || strings.Contains(string(dst), "forged") {
		t.Errorf("rewritten head:\n%s", dst)
	}
}

// TestForwardedForFormatIP: with forwardedForFormat=ip the entry loopgate
// appends is the client's address alone; what the client sent is kept.
func TestForwardedForFormatIP(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	addr, got := capturingBackend(t, okResponse)
	h.backend("/", addr)
	h.setSpec("/", func(s *configload.AppSpec) { s.ForwardedForFormat = configload.ForwardedForIP })
	c := dialRaw(t, h.addr)
	resp, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if v := recv(t, got).values("X-Forwarded-For"); len(v) != 1 || v[0] != "198.51.100.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client's entry and 127.0.0.1", v)
	}
}

// TestForwardedForFormatPerRequest: the client's entry, formatted once per
// connection, follows the app's forwardedForFormat on each request of a
// keep-alive connection.
func TestForwardedForFormatPerRequest(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	addr, got := capturingBackend(t, okResponse)
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	port := strconv.Itoa(c.c.LocalAddr().(*net.TCPAddr).Port)
	for i, tc := range []struct {
		format configload.ForwardedForFormat
		want   string
	}{
		{configload.ForwardedForIPPort, "127.0.0.1:" + port},
		{configload.ForwardedForIP, "127.0.0.1"},
		{configload.ForwardedForIPPort, "127.0.0.1:" + port},
		{configload.ForwardedForIP, "127.0.0.1"},
	} {
		h.setSpec("/", func(s *configload.AppSpec) { s.ForwardedForFormat = tc.format })
		if resp, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		if v := recv(t, got).values("X-Forwarded-For"); len(v) != 1 || v[0] != tc.want {
			t.Errorf("request %d: X-Forwarded-For %q, want %q", i, v, tc.want)
		}
	}
}

// TestResetBoundsHeadLines: an exchange keeps the index of a usual head's
// lines for the next request, not that of a head of thousands of lines.
func TestResetBoundsHeadLines(t *testing.T) {
	for _, tc := range []struct {
		lines int
		kept  bool
	}{{10, true}, {3000, false}} {
		var req fasthttp.Request
		raw := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("a:\r\n", tc.lines) + "\r\n"
		if err := req.Header.Read(bufio.NewReaderSize(strings.NewReader(raw), len(raw))); err != nil {
			t.Fatal(err)
		}
		x := &exchange{}
		if err := scanRequestHeaders(req.Header.RawHeaders(), &x.ri); err != nil || len(x.ri.lines) != tc.lines+1 {
			t.Fatalf("%d lines: scanned %d, %v", tc.lines, len(x.ri.lines), err)
		}
		x.reset()
		if kept := cap(x.ri.lines) > 0; kept != tc.kept || cap(x.ri.lines) > keptHeadLines {
			t.Errorf("%d lines: reset kept an index of capacity %d", tc.lines, cap(x.ri.lines))
		}
	}
}
