// loopgate's own answers to gRPC clients: an HTTP status turned into
// grpc-status and grpc-message, as Envoy's local replies do.

package fastpath

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// grpcStatus answers a gRPC client (Content-Type application/grpc...) the
// way Envoy's and grpc-web proxies' local replies do: HTTP 200 with the
// status in grpc-status and grpc-message and no body (a Trailers-Only
// response), the code mapped from the HTTP status as gRPC's
// http-grpc-status-mapping says (400 INTERNAL, 401 UNAUTHENTICATED, 403
// PERMISSION_DENIED, 404 UNIMPLEMENTED, 429, 502, 503 and 504 UNAVAILABLE,
// others UNKNOWN). The access log keeps the HTTP status it stands for.
func grpcStatus(r *fasthttp.Response, status int, msg string) {
	code := 2 // UNKNOWN
	switch status {
	case fasthttp.StatusBadRequest:
		code = 13 // INTERNAL
	case fasthttp.StatusUnauthorized:
		code = 16
	case fasthttp.StatusForbidden:
		code = 7
	case fasthttp.StatusNotFound:
		code = 12 // UNIMPLEMENTED
	case fasthttp.StatusTooManyRequests, fasthttp.StatusBadGateway, fasthttp.StatusServiceUnavailable, fasthttp.StatusGatewayTimeout:
		code = 14 // UNAVAILABLE
	}
	r.Header.SetStatusCode(fasthttp.StatusOK)
	r.SetBodyRaw(nil)
	r.Header.SetContentType("application/grpc")
	r.Header.Set("grpc-status", strconv.Itoa(code))
	r.Header.Set("grpc-message", grpcPercentEncode("loopgate: "+msg))
}

// grpcPercentEncode encodes a grpc-message: bytes outside printable ASCII,
// and '%', as %XX (gRPC over HTTP/2, "Responses").
func grpcPercentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// gatewayWhy are the gRPC messages of the 502.3 answers, by cause.
var gatewayWhy = func() (w [len(gatewayTexts)]string) {
	for g, text := range gatewayTexts {
		w[g] = strings.TrimSpace("502.3 Bad Gateway: " + text)
	}
	w[gatewayTimeout] = "502.3 Bad Gateway: requestTimeout expired"
	return w
}()

// isGRPC reports a request whose client speaks gRPC (or gRPC-Web).
func isGRPC(h *fasthttp.RequestHeader) bool {
	return bytes.HasPrefix(h.ContentType(), strGRPC)
}

var strGRPC = []byte("application/grpc")
