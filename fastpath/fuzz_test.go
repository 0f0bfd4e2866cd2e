package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// FuzzHeaderRewrite feeds arbitrary client header blocks through the
// parse, the smuggling scan and the rewrite the backend receives, and
// checks the trust model (headers.go) holds for every block loopgate
// accepts: the pairing token is exactly loopgate's and appears once, no
// client MS-ASPNETCORE* header survives, X-Forwarded-For appears once and
// ends with the real peer, exactly one framing header is declared, and the
// result is one well-formed request head that parses back to the same
// method and target.
func FuzzHeaderRewrite(f *testing.F) {
	for _, seed := range []struct {
		headers string
		port    uint16
		v6      bool
		length  int64
	}{
		{"", 40000, false, -2},
		{"MS-ASPNETCORE-TOKEN: forged\r\n", 1, false, -2},
		{"ms-aspnetcore-token: a\r\nMS-ASPNETCORE-TOKEN: b\r\nMs-AspNetCore-Token:c\r\n", 65535, true, 5},
		{"MS-ASPNETCORE-EVENT: shutdown\r\nMS-ASPNETCORE-CLIENTCERT: AAAA\r\n", 443, false, -1},
		{"MS-ASPNETCORE-TOKEN :x\r\n", 2, false, -2},
		{"Connection: MS-ASPNETCORE-TOKEN, X-Forwarded-For\r\n", 3, false, -2},
		{"X-Forwarded-For: 1.2.3.4\r\nx-forwarded-for: 5.6.7.8, [::1]:9\r\nX-Forwarded-For:\r\n", 4, true, -2},
		{"X-Forwarded-For:\t10.0.0.1\t\r\nX-Forwarded-Proto: https\r\n", 5, false, 0},
		{"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\n", 6, false, -2},
		{"Content-Length: 5\r\n", 7, false, 5},
		{"Transfer-Encoding: chunked\r\n", 8, false, -1},
		{"X-A: \xff\xfe\r\nX-B: caf\xc3\xa9\r\n", 9, false, -2},
	} {
		f.Add(seed.headers, seed.port, seed.v6, seed.length)
	}
	const token = "7f6c3e1a-0b2d-4c5e-9f8a-1b2c3d4e5f60"
	f.Fuzz(func(t *testing.T, headers string, port uint16, v6 bool, length int64) {
		raw := "GET /t?q=1 HTTP/1.1\r\nHost: h\r\n" + headers + "\r\n"
		var req fasthttp.Request
		req.Header.DisableNormalizing()
		if err := req.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return // fasthttp answers 400 before the handler runs
		}
		var ri reqInfo
		if scanRequestHeaders(req.Header.RawHeaders(), &ri) != nil {
			return // answered 400, nothing forwarded
		}
		peer := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: int(port)}
		wantPeer := "203.0.113.7:" + strconv.Itoa(int(port))
		if v6 {
			peer.IP = net.ParseIP("2001:db8::7")
			wantPeer = "[2001:db8::7]:" + strconv.Itoa(int(port))
		}
		if length < -2 {
			length = -2
		}
		in := headInput{token: token, remote: peer, body: reqBodyOf(length), contentLength: length}
		head := appendRequestHead(nil, &req.Header, &ri, &in)

		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			t.Fatalf("head does not end with an empty line:\n%q", head)
		}
		lines := strings.Split(string(head[:len(head)-4]), "\r\n")
		if want := "GET /t?q=1 HTTP/1.1"; lines[0] != want {
			t.Fatalf("request line %q, want %q", lines[0], want)
		}
		var tokens, xff []string
		framing := 0
		for _, line := range lines[1:] {
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("CR or LF inside a header line %q:\n%q", line, head)
			}
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" {
				t.Fatalf("malformed header line %q:\n%q", line, head)
			}
			value = strings.Trim(value, " \t")
			switch lname := strings.ToLower(name); {
			case lname == "ms-aspnetcore-token":
				tokens = append(tokens, value)
			case strings.HasPrefix(lname, "ms-aspnetcore"):
				t.Fatalf("client header %q reached the backend:\n%q", line, head)
			case lname == "x-forwarded-for":
				xff = append(xff, value)
			case lname == "content-length" || lname == "transfer-encoding":
				framing++
			}
		}
		if len(tokens) != 1 || tokens[0] != token {
			t.Fatalf("MS-ASPNETCORE-TOKEN lines %q, want exactly [%s]:\n%q", tokens, token, head)
		}
		if len(xff) != 1 {
			t.Fatalf("%d X-Forwarded-For lines, want 1:\n%q", len(xff), head)
		}
		if last := xff[0][strings.LastIndex(xff[0], ",")+1:]; strings.TrimSpace(last) != wantPeer {
			t.Fatalf("X-Forwarded-For %q does not end with the peer %s", xff[0], wantPeer)
		}
		if want := map[bool]int{true: 1, false: 0}[length >= -1]; framing != want {
			t.Fatalf("%d framing headers for length %d, want %d:\n%q", framing, length, want, head)
		}
		var back fasthttp.RequestHeader
		back.DisableNormalizing()
		if err := back.Read(bufio.NewReader(bytes.NewReader(head))); err != nil {
			t.Fatalf("the backend could not parse the head: %v\n%q", err, head)
		}
		if string(back.Method()) != "GET" || string(back.RequestURI()) != "/t?q=1" {
			t.Fatalf("parsed back as %s %s", back.Method(), back.RequestURI())
		}
	})
}

// routeApp is an App that only has a virtual path: enough for the router.
type routeApp struct{ vpath string }

func (a routeApp) Name() string              { return a.vpath }
func (a routeApp) VirtualPath() string       { return a.vpath }
func (a routeApp) Spec() *configload.AppSpec { return nil }
func (a routeApp) OfflinePage() []byte       { return nil }
func (a routeApp) Acquire(context.Context) (Backend, supervisor.Outcome) {
	return nil, supervisor.Stopping
}

// FuzzRoute checks the router against its contract for arbitrary request
// targets: the path is what precedes '?' or '#' (after scheme://authority
// in absolute form); its dot segments are removed as refNormalizePath, a
// plain reading of RFC 3986 §5.2.4 over a list of segments, does (a dot may
// be written %2e), a path climbing above "/" is refused, and only the path
// changes; a target without dot segments is forwarded as it is; and the
// app chosen for the normalized target is the one with the longest virtual
// path that is an ASCII-case-insensitive prefix of its path on a segment
// boundary; nothing else matches, and no path outside every app matches.
func FuzzRoute(f *testing.F) {
	for _, seed := range []string{
		"/", "/api", "/api/", "/apix", "/API/v2/x", "/api/v2?x=/api/v3", "/api#/v2", "*",
		"http://h/api/v2", "http://h", "https://h:1/Other/x", "//api/v2", "/api/../v2",
		"/api%2Fv2", "/\u212api", "/api/v2/", "example.com:443", "/Other", "/otherwise",
		"/x/../api/v2?a=/../", "/api/%2e%2E/Other/x", "/..", "/api/../../x", "/a//../api", "/api/.", "/api/...",
		"http://h/api/./v2/..", "/%2e/api", "/api%2F..%2Fv2", "/api/.%2e",
	} {
		f.Add(seed)
	}
	vpaths := []string{"/api", "/api/v2", "/Other/"}
	f.Fuzz(func(t *testing.T, target string) {
		if target == "" {
			return // fasthttp refuses a request line without a target
		}
		for _, withRoot := range []bool{false, true} {
			vps := vpaths
			if withRoot {
				vps = append([]string{"/"}, vpaths...)
			}
			apps := make([]App, len(vps))
			for i, vp := range vps {
				apps[i] = routeApp{vp}
			}
			r, err := newRouter(apps)
			if err != nil {
				t.Fatal(err)
			}
			checkTargetPath(t, target, string(targetPath([]byte(target))))
			fwd, ok := checkNormalized(t, target)
			if !ok {
				return // refused with 400
			}
			path := string(targetPath([]byte(fwd)))
			got := r.match([]byte(fwd))
			want := ""
			for _, vp := range vps {
				p := strings.TrimSuffix(vp, "/")
				if len(path) >= len(p) && asciiFold(path[:len(p)]) == asciiFold(p) &&
					(len(path) == len(p) || path[len(p)] == '/') && len(p) >= len(strings.TrimSuffix(want, "/")) {
					want = vp
				}
			}
			switch {
			case got == nil && want != "":
				t.Fatalf("target %q (path %q): no app, want %q", target, path, want)
			case got != nil && got.app.VirtualPath() != want:
				t.Fatalf("target %q (path %q): app %q, want %q", target, path, got.app.VirtualPath(), want)
			}
		}
	})
}

// checkNormalized checks forwardedTarget against refNormalizePath for
// target and returns the target forwarded, or false when it is refused.
func checkNormalized(t *testing.T, target string) (string, bool) {
	t.Helper()
	prefix, path, rest := splitTarget([]byte(target))
	if string(prefix)+string(path)+string(rest) != target {
		t.Fatalf("splitTarget(%q) = %q %q %q", target, prefix, path, rest)
	}
	want, climbs, dots := string(path), false, false
	if len(path) > 0 {
		want, climbs, dots = refNormalizePath(string(path))
	}
	if dotSegmentsIn(path) != dots {
		t.Fatalf("%q: dotSegmentsIn %v, want %v", target, !dots, dots)
	}
	got, _, err := forwardedTarget(nil, []byte(target))
	if climbs {
		if err == nil {
			t.Fatalf("%q climbs above / but is forwarded as %q", target, got)
		}
		return "", false
	}
	if err != nil {
		t.Fatalf("%q refused: %v", target, err)
	}
	if !dots && string(got) != target {
		t.Fatalf("%q has no dot segment but is forwarded as %q", target, got)
	}
	if w := string(prefix) + want + string(rest); string(got) != w {
		t.Fatalf("%q forwarded as %q, want %q", target, got, w)
	}
	if again, _, err := forwardedTarget(nil, got); err != nil || string(again) != string(got) {
		t.Fatalf("%q: normalizing %q again gives %q, %v", target, got, again, err)
	}
	return string(got), true
}

// refNormalizePath is remove_dot_segments (RFC 3986 §5.2.4) for an
// absolute path, written over a list of segments: "." is dropped, ".."
// drops the segment before it (climbs: none left), and either one last
// leaves the path ending in "/". A dot may be written %2e or %2E.
func refNormalizePath(path string) (norm string, climbs, dots bool) {
	segs := strings.Split(path[1:], "/")
	var out []string
	for i, seg := range segs {
		last := i == len(segs)-1
		switch strings.ReplaceAll(strings.ReplaceAll(seg, "%2e", "."), "%2E", ".") {
		case ".":
			dots = true
			if last {
				out = append(out, "")
			}
		case "..":
			dots = true
			if len(out) == 0 {
				return "", true, true
			}
			out = out[:len(out)-1]
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/"), false, dots
}

// checkTargetPath checks targetPath's result for target.
func checkTargetPath(t *testing.T, target, path string) {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		want := target
		if i := strings.IndexAny(target, "?#"); i >= 0 {
			want = target[:i]
		}
		if path != want {
			t.Fatalf("origin-form %q: path %q, want %q", target, path, want)
		}
		return
	}
	if path == "" || path[0] != '/' || strings.ContainsAny(path, "?#") {
		t.Fatalf("target %q: path %q must start with / and hold no query or fragment", target, path)
	}
	if path != "/" && !strings.Contains(target, path) {
		t.Fatalf("target %q: path %q is not part of it", target, path)
	}
}

func asciiFold(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}
