// The request head loopgate writes to the backend: the client's request
// line and headers, rewritten by the trust model in headers.go.

package fastpath

import (
	"encoding/base64"
	"net"
	"net/netip"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/configload"
)

// headInput is what appendRequestHead adds to the client's headers.
type headInput struct {
	target []byte // the request target (requestline.go); nil: the client's
	token  string
	remote net.Addr
	// remoteEntry is remote as forwardedFor writes it, formatted once per
	// connection (trackedConn.forwardedFor); nil: formatted here.
	remoteEntry []byte
	local       net.Addr // the address the client connected to: the Host of a request without one
	https       bool
	clientCert  []byte // verified client certificate DER, or nil
	// forwardedFor is the app's forwardedForFormat: ip:port or ip alone.
	forwardedFor configload.ForwardedForFormat
	// body is the framing to declare: Content-Length (contentLength
	// bytes), chunked, or none at all.
	body          reqBody
	contentLength int64
}

// appendRequestHead appends the request line and header block the backend
// receives (see the trust model in headers.go) to dst, in HTTP/1.1 (requestline.go).
// ri is what scanRequestHeaders found in h's raw headers. It allocates
// nothing once dst has grown to size.
func appendRequestHead(dst []byte, h *fasthttp.RequestHeader, ri *reqInfo, in *headInput) []byte {
	dst = append(dst, h.Method()...)
	dst = append(dst, ' ')
	if in.target != nil {
		dst = append(dst, in.target...)
	} else {
		dst = append(dst, h.RequestURI()...)
	}
	dst = append(dst, " HTTP/1.1\r\n"...)
	if !ri.hasHost {
		// HTTP/1.0 without Host: the address the client reached.
		dst = append(dst, "Host: "...)
		dst = appendForwardedFor(dst, in.local, configload.ForwardedForIPPort)
		dst = append(dst, "\r\n"...)
	}

	// The client's lines, each run of kept ones copied in one piece.
	raw := h.RawHeaders()
	run := -1 // where the run of kept lines not yet copied starts
	for _, l := range ri.lines {
		if dropRequestHeader(raw[l.start:l.colon], raw[l.colon+1:l.end], ri) {
			if run >= 0 {
				dst = append(dst, raw[run:l.start]...)
				run = -1
			}
		} else if run < 0 {
			run = l.start
		}
	}
	if run >= 0 {
		dst = append(dst, raw[run:ri.lines[len(ri.lines)-1].end+2]...)
	}

	dst = append(dst, "X-Forwarded-For: "...)
	if ri.hasXFF {
		dst = appendValues(dst, raw, ri, "x-forwarded-for")
	}
	if in.remoteEntry != nil {
		dst = append(dst, in.remoteEntry...)
	} else {
		dst = appendForwardedFor(dst, in.remote, in.forwardedFor)
	}
	dst = append(dst, "\r\nX-Forwarded-Proto: "...)
	if ri.hasXFP {
		dst = appendValues(dst, raw, ri, "x-forwarded-proto")
	}
	if in.https {
		dst = append(dst, "https\r\n"...)
	} else {
		dst = append(dst, "http\r\n"...)
	}
	if ri.websocket {
		dst = append(dst, "Connection: Upgrade\r\n"...)
	}
	switch in.body {
	case reqBodySized:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, in.contentLength, 10)
		dst = append(dst, "\r\n"...)
	case reqBodyChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	dst = append(dst, "MS-ASPNETCORE-TOKEN: "...)
	dst = append(dst, in.token...)
	dst = append(dst, "\r\n"...)
	if in.clientCert != nil {
		dst = append(dst, "MS-ASPNETCORE-CLIENTCERT: "...)
		n := base64.StdEncoding.EncodedLen(len(in.clientCert))
		dst = grow(dst, n)
		base64.StdEncoding.Encode(dst[len(dst):len(dst)+n], in.clientCert)
		dst = dst[:len(dst)+n]
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// dropRequestHeader reports whether a client header must not reach the
// backend (see the trust model in headers.go). value may have the
// whitespace around it (it is looked at for one name only).
func dropRequestHeader(name, value []byte, ri *reqInfo) bool {
	if len(name) >= 13 && equalFoldASCII(name[:13], "ms-aspnetcore") {
		return true
	}
	switch len(name) {
	case 2:
		return equalFoldASCII(name, "te")
	case 6:
		return equalFoldASCII(name, "expect") && equalFoldASCII(trimOWS(value), "100-continue")
	case 15:
		// Rewritten with loopgate's entry appended.
		if equalFoldASCII(name, "x-forwarded-for") {
			return true
		}
	case 7:
		if equalFoldASCII(name, "upgrade") {
			return !ri.websocket
		}
		if equalFoldASCII(name, "trailer") {
			return true
		}
	case 10:
		if equalFoldASCII(name, "connection") || equalFoldASCII(name, "keep-alive") {
			return true
		}
	case 14:
		if equalFoldASCII(name, "content-length") {
			return true
		}
	case 16:
		if equalFoldASCII(name, "proxy-connection") {
			return true
		}
	case 17:
		if equalFoldASCII(name, "transfer-encoding") || equalFoldASCII(name, "x-forwarded-proto") {
			return true
		}
	}
	for i := 0; i < ri.nConn; i++ {
		if equalFoldBytes(name, ri.connTokens[i]) && !protectedFromConnection(name) {
			return true
		}
	}
	return false
}

// protectedFromConnection lists headers a client may not remove by naming
// them in Connection: the backend needs them to route and frame the request.
func protectedFromConnection(name []byte) bool {
	return equalFoldASCII(name, "host") || equalFoldASCII(name, "upgrade")
}

func equalFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// appendValues appends the values of every header called name among the
// lines of raw, each followed by ", ": the client's list that loopgate's
// entry extends.
func appendValues(dst, raw []byte, ri *reqInfo, name string) []byte {
	for _, l := range ri.lines {
		if v := trimOWS(raw[l.colon+1 : l.end]); len(v) > 0 && equalFoldASCII(raw[l.start:l.colon], name) {
			dst = append(dst, v...)
			dst = append(dst, ", "...)
		}
	}
	return dst
}

// appendForwardedFor appends "ip:port" or "[ip6]:port" for addr.
func appendForwardedFor(dst []byte, addr net.Addr, format configload.ForwardedForFormat) []byte {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return append(dst, "unknown"...)
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return append(dst, "unknown"...)
	}
	ip = ip.Unmap()
	if format == configload.ForwardedForIP {
		return ip.AppendTo(dst)
	}
	if ip.Is4() {
		dst = ip.AppendTo(dst)
	} else {
		dst = append(dst, '[')
		dst = ip.AppendTo(dst)
		dst = append(dst, ']')
	}
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(ta.Port), 10)
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}
