// A client's request trailers on their way to the app: the one rule that
// keeps or drops each (requestTrailerKept), and the trailer section an
// HTTP/1.1 app gets after the last chunk. An h2c app gets them as HTTP/2
// trailers (h2c.go: h2cTrailers, h1Trailers).

package fastpath

import (
	"bufio"
	"iter"
	"slices"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// requestTrailerKept is the rule for a client's request trailer toward the
// app, from an HTTP/2 or an HTTP/1.1 client and to an HTTP/1.1 or an h2c
// app alike: a field the header rules drop (MS-ASPNETCORE-*,
// X-Forwarded-*, hop-by-hop, framing) is dropped, as is one that may not
// be a trailer (RFC 9110 §6.5.1, the list Go's HTTP/2 server refuses with
// a stream error) and a value with a control character (validFieldValue,
// addTrailer's rule). value is nil to judge the name alone.
func requestTrailerKept(name, value []byte, ri *reqInfo) bool {
	return !dropRequestHeader(name, value, ri) && !responseHopHeader(name) &&
		httpguts.ValidTrailerHeader(string(name)) && validFieldValue(value)
}

// headFields counts the fields fasthttp holds for a request head, less the
// Connection: close it yields last from a flag. fasthttp appends a chunked
// body's trailer section to these fields when it reads it (its
// parseTrailer), so once the body ended, the fields past this count are
// the trailers.
func headFields(h *fasthttp.RequestHeader) int {
	n := 0
	for range h.All() {
		n++
	}
	if h.ConnectionClose() {
		n--
	}
	return n
}

// writeRequestTrailers writes the client's request trailers that
// requestTrailerKept keeps into the trailer section of the chunked body
// an HTTP/1.1 app gets, between the last chunk and the final CRLF: an
// HTTP/1.1 client's trailer section, announced or not (the fields past
// head, its headFields before the body), or an HTTP/2 client's trailers
// (those it announced: Go's HTTP/2 server keeps no others). The Trailer
// announcement itself stays out of the head, as a hop-by-hop field: HTTP/1.1
// servers read a trailer section without it.
func (x *exchange) writeRequestTrailers(w *bufio.Writer, head int) {
	if x.stream != nil {
		tr := x.stream.trailer()
		if len(tr) == 0 {
			return
		}
		names := make([]string, 0, len(tr))
		for k := range tr {
			names = append(names, k)
		}
		slices.Sort(names) // a map's order is random; the app gets a stable one
		for _, k := range names {
			for _, v := range tr[k] {
				writeTrailerField(w, []byte(k), []byte(v), &x.ri)
			}
		}
		return
	}
	for k, v := range x.trailerSection(head) {
		writeTrailerField(w, k, v, &x.ri)
	}
}

// trailerSection yields an HTTP/1.1 client's chunked trailer section, once
// the body ended: the request header's fields past head, its headFields
// before the body. requestTrailerKept is for the caller to apply.
func (x *exchange) trailerSection(head int) iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		i := 0
		for k, v := range x.ctx.Request.Header.All() {
			if i >= head && !yield(k, v) {
				return
			}
			i++
		}
	}
}

// writeTrailerField writes one trailer field if requestTrailerKept keeps it.
func writeTrailerField(w *bufio.Writer, name, value []byte, ri *reqInfo) {
	if !requestTrailerKept(name, value, ri) {
		return
	}
	_, _ = w.Write(name)
	_, _ = w.WriteString(": ")
	_, _ = w.Write(value)
	_, _ = w.WriteString("\r\n")
}
