// The request line: which HTTP versions loopgate forwards and how it
// speaks them to the app.

package fastpath

import (
	"bytes"
	"errors"

	"github.com/valyala/fasthttp"
)

// Versions, as nginx handles them (ngx_http_parse_request_line answers a
// major version above 1 with 505 and takes any 1.x; proxy_http_version 1.1
// speaks HTTP/1.1 upstream whatever the client spoke), and as ANCM does
// (WinHTTP sends HTTP/1.1 to the app):
//
//   - HTTP/1.1 is forwarded as it is;
//   - HTTP/1.0 reaches the app as HTTP/1.1; a request without a Host line
//     gets one, the address the client connected to (HTTP/1.1 requires it);
//     toward the client it stays HTTP/1.0 (no keep-alive unless asked for,
//     a close-delimited body when the length is unknown);
//   - a later 1.x (HTTP/1.2, ...) is taken for HTTP/1.1 on both sides, as
//     RFC 9110 §2.5 says a recipient should: Host is required (400 without
//     it), the connection is kept alive unless the client says close;
//   - a major version above 1 (HTTP/2.0, HTTP/3.0) is answered 505 HTTP
//     Version Not Supported by loopgate, and the HTTP/2 connection preface
//     ("PRI * HTTP/2.0") on a listener that speaks HTTP/1.1 with 400; major
//     version 0 ("HTTP/0.9" written out, which no HTTP/0.9 client sends)
//     with 400, as nginx does; the connection closes after each.
//
// fasthttp has already refused a version not of the form HTTP/d.d (400).

var (
	strPRI  = []byte("PRI")
	strStar = []byte("*")
)

// refuseVersion returns the status loopgate answers a request with for
// its version (505, or 400 for the preface), or 0 for any HTTP/1.x.
func refuseVersion(h *fasthttp.RequestHeader) int {
	p := h.Protocol()
	if len(p) == len("HTTP/1.1") && p[5] == '1' {
		return 0
	}
	if string(p) == "HTTP/2.0" && string(h.Method()) == string(strPRI) && string(h.RequestURI()) == string(strStar) {
		return fasthttp.StatusBadRequest
	}
	if len(p) == len("HTTP/1.1") && p[5] == '0' {
		return fasthttp.StatusBadRequest // no HTTP/0.x request line carries a version; nginx: 400
	}
	return fasthttp.StatusHTTPVersionNotSupported
}

// asHTTP11 takes an HTTP/1.x request with x > 1 for HTTP/1.1 (the
// connection was kept alive by keepAliveLaterMinor); it returns 400 for one
// without Host, else 0.
func asHTTP11(h *fasthttp.RequestHeader) int {
	if p := h.Protocol(); p[7] <= '1' {
		return 0
	}
	if len(h.Host()) == 0 {
		return fasthttp.StatusBadRequest // as fasthttp answers an HTTP/1.1 request
	}
	h.SetProtocolBytes(strHTTP11)
	return 0
}

// keepAliveLaterMinor is fasthttp's HeaderReceived hook, the one place
// before fasthttp decides whether the connection outlives the request: an
// HTTP/1.x request with x > 1 keeps it unless the client says close (fasthttp
// treats every version but 1.1 as 1.0).
func keepAliveLaterMinor(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if p := h.Protocol(); len(p) == len("HTTP/1.1") && p[5] == '1' && p[7] > '1' && !connectionSaysClose(h.RawHeaders()) {
		h.ResetConnectionClose()
	}
	return fasthttp.RequestConfig{}
}

// connectionSaysClose reports whether a Connection line of raw lists close.
func connectionSaysClose(raw []byte) bool {
	for len(raw) > 0 {
		line, rest, err := nextHeaderLine(raw)
		if err != nil || len(line) == 0 {
			return false
		}
		raw = rest
		name, value, _ := splitHeader(line)
		if !equalFoldASCII(name, "connection") {
			continue
		}
		for len(value) > 0 {
			var tok []byte
			tok, value = nextToken(value)
			if equalFoldASCII(tok, "close") {
				return true
			}
		}
	}
	return false
}

// Paths. loopgate routes on the request target's path with its dot
// segments removed (RFC 3986 §5.2.4 remove_dot_segments), as IIS (http.sys
// canonicalizes the URL before IIS picks a site and an application) and
// nginx (locations match the normalized $uri) do, and forwards the target
// it routed: /api/../x goes to the app at / as /x, so routing and the app
// never disagree about where a request belongs. The rules:
//
//   - a segment is "." or ".." with each dot written as "." or as "%2e" or
//     "%2E" (http.sys, nginx and Kestrel all decode %2e before they resolve
//     dot segments, so an app would too): /a/%2e%2e/b is /b;
//   - "%2F" and "\" are data, never a separator: ASP.NET Core keeps %2F
//     encoded in the path it routes on (nginx decodes it, and http.sys
//     turns "\" into "/"), so /api%2F..%2Fx is one segment, not a dot
//     segment, and reaches the root app as written;
//   - empty segments stay (RFC 3986; nginx's merge_slashes would merge
//     them): /a//../b is /a/b;
//   - a ".." with no segment left to remove climbs above "/" and the request
//     is refused with 400, as nginx and IIS refuse it (RFC 3986 would keep
//     the "/");
//   - only the path is touched: the query, an absolute-form target's scheme
//     and authority, and every other byte reach the app as the client sent
//     them; "*" and authority-form targets have no path.
//
// A target without a dot segment is forwarded as it came, without a copy;
// one with is normalized into the exchange's reusable buffer.

// errClimbs refuses a path whose ".." segments climb above "/".
var errClimbs = errors.New("request path climbs above /")

// forwardedTarget returns the target to route and forward: target itself
// when its path has no dot segment, else the normalized one, built in buf
// (returned, grown, for reuse). It fails with errClimbs.
func forwardedTarget(buf, target []byte) (t, newBuf []byte, err error) {
	if _, path, _ := splitTarget(target); !dotSegmentsIn(path) {
		return target, buf, nil
	}
	buf, ok := normalizeTarget(buf[:0], target)
	if !ok {
		return nil, buf, errClimbs
	}
	return buf, buf, nil
}

// dotSegmentsIn reports whether path has a "." or ".." segment.
func dotSegmentsIn(path []byte) bool {
	// A dot segment has a '.', or a '%' of "%2e": two vector searches
	// rule out most paths for less than the loop below costs.
	if bytes.IndexByte(path, '.') < 0 && bytes.IndexByte(path, '%') < 0 {
		return false
	}
	for i := 0; i < len(path); i++ {
		if path[i] == '/' && dotSegment(path[i+1:]) > 0 {
			return true
		}
	}
	return false
}

// dotSegment returns 1 or 2 when p starts with a "." or ".." segment
// (ended by '/' or the end of p), else 0.
func dotSegment(p []byte) int {
	dots := 0
	for len(p) > 0 && p[0] != '/' {
		switch {
		case p[0] == '.':
			p = p[1:]
		case len(p) >= 3 && p[0] == '%' && p[1] == '2' && (p[2] == 'e' || p[2] == 'E'):
			p = p[3:]
		default:
			return 0
		}
		if dots++; dots > 2 {
			return 0
		}
	}
	return dots
}

// normalizeTarget appends target to dst with its path's dot segments
// removed; ok is false when the path climbs above "/".
func normalizeTarget(dst, target []byte) (out []byte, ok bool) {
	prefix, path, rest := splitTarget(target)
	dst = append(dst, prefix...)
	base := len(dst)
	for i := 0; i < len(path); {
		// path[i] is '/'; its segment runs to the next '/' or the end.
		k := i + 1
		for k < len(path) && path[k] != '/' {
			k++
		}
		switch dotSegment(path[i+1 : k]) {
		case 0:
			dst = append(dst, path[i:k]...)
		case 2:
			if len(dst) == base {
				return dst, false
			}
			j := len(dst) - 1
			for dst[j] != '/' {
				j--
			}
			dst = dst[:j]
			fallthrough
		case 1:
			if k == len(path) {
				dst = append(dst, '/') // "/a/." is "/a/", "/a/b/.." is "/a/"
			}
		}
		i = k
	}
	return append(dst, rest...), true
}

// splitTarget splits a request target around its path: an absolute-form
// target's scheme and authority before it, the query (or a fragment) after
// it. "*" and authority-form targets, and an absolute-form one without a
// path, have none (path is nil, all of t is in prefix).
func splitTarget(t []byte) (prefix, path, rest []byte) {
	p := 0
	if len(t) > 0 && t[0] != '/' {
		i := indexString(t, "://")
		if i < 0 {
			return t, nil, nil
		}
		p = i + 3
		for p < len(t) && t[p] != '/' && t[p] != '?' {
			p++
		}
		if p == len(t) || t[p] != '/' {
			return t, nil, nil
		}
	}
	// Two vector scans, the second only over the path, cost less than one
	// loop over bytes from the second byte on (BenchmarkRoute: a byte loop
	// cost 408 instructions a root match, these 1140d77's 360 or fewer).
	e := len(t)
	if i := bytes.IndexByte(t[p:], '?'); i >= 0 {
		e = p + i
	}
	if i := bytes.IndexByte(t[p:e], '#'); i >= 0 {
		e = p + i
	}
	return t[:p], t[p:e], t[e:]
}
