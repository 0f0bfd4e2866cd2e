// The request line: which HTTP versions loopgate forwards and how it
// speaks them to the app.

package fastpath

import (
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
//   - any other major version (HTTP/0.9 written out, HTTP/2.0, HTTP/3.0) is
//     answered 505 HTTP Version Not Supported by loopgate, and the HTTP/2
//     connection preface ("PRI * HTTP/2.0") on a listener that speaks
//     HTTP/1.1 with 400; the connection closes after either.
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
