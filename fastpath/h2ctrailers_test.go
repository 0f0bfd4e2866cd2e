package fastpath

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trailerEchoNodeH2C is trailerEchoNode as an h2c app: Node's http2
// module with prior knowledge, whose compatibility API (createServer,
// req.rawTrailers) is the http module's.
var trailerEchoNodeH2C = strings.Replace(trailerEchoNode, `require("http")`, `require("http2")`, 1)

// TestH2CChunkedRequestTrailers: an HTTP/1.1 client's chunked trailer
// section reaches an h2c app as HTTP/2 trailers by requestTrailerKept, the
// rule an HTTP/1.1 app's trailer section follows: announced or not (an
// unannounced one was dropped before), with the fields the header rules
// drop (MS-ASPNETCORE-*) and those that may not be trailers left out; a
// value the head carried under the same name is not taken for the
// trailer's; a trailer that frames fails the body. Against Go's net/http
// and Node's http2 module.
func TestH2CChunkedRequestTrailers(t *testing.T) {
	// Go's HTTP/2 server hands its handler only the trailers the request
	// announced (its copyTrailersToHandlerRequest): the app drops the
	// others itself. Node's keeps every one.
	type app struct {
		start       func(h *tlsHarness)
		unannounced bool // the app sees unannounced trailers
	}
	apps := map[string]app{
		"net/http": {start: func(h *tlsHarness) { h.h2cBackend(trailerEchoGo) }},
	}
	if addr, ok := startNodeApp(t, trailerEchoNodeH2C); ok {
		apps["node"] = app{start: func(h *tlsHarness) { h.h2cBackendAt(addr) }, unannounced: true}
	}
	for name, a := range apps {
		t.Run(name, func(t *testing.T) {
			h := newTLSHarness(t, Config{})
			a.start(h)
			t.Run("net/http client", func(t *testing.T) {
				for _, size := range []int{16, 64 << 10} {
					req, _ := http.NewRequest("POST", h.url("/up"), io.MultiReader(strings.NewReader(strings.Repeat("t", size))))
					req.Trailer = http.Header{"X-Checksum": nil, "Ms-Aspnetcore-Token": nil}
					req.Trailer.Set("X-Checksum", "abc")
					req.Trailer.Set("Ms-Aspnetcore-Token", "forged")
					resp, err := h.client(false).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.ProtoMajor != 1 || resp.Header.Get("Seen-Bytes") != strconv.Itoa(size) ||
						resp.Header.Get("Seen-Trailers") != "x-checksum=abc" {
						t.Errorf("%d bytes: the app saw %v", size, resp.Header)
					}
				}
			})
			raw := func(t *testing.T, head, trailer string) *http.Response {
				t.Helper()
				c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots, NextProtos: []string{"http/1.1"}})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n%s\r\n5\r\nhello\r\n0\r\n%s\r\n", head, trailer)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return nil
				}
				resp.Body.Close()
				return resp
			}
			t.Run("raw", func(t *testing.T) {
				// Announced, a name the head carries too, a forbidden
				// trailer Go's server would reset the stream for, the
				// token, and one that was not announced.
				resp := raw(t, "Trailer: X-Checksum, Cache-Control, MS-ASPNETCORE-TOKEN\r\nX-Checksum: head\r\n",
					"X-Checksum: abc\r\nCache-Control: no-store\r\nMS-ASPNETCORE-TOKEN: forged\r\nX-Unannounced: 1\r\n")
				want := "x-checksum=abc"
				if a.unannounced {
					want += ";x-unannounced=1"
				}
				if resp == nil || resp.StatusCode != 200 || resp.Header.Get("Seen-Bytes") != "5" ||
					resp.Header.Get("Seen-Trailers") != want || resp.Header.Get("Seen-Head-Checksum") != "head" {
					t.Errorf("the app saw %v", resp)
				}
				// A trailer that frames is refused (fasthttp, as on the
				// HTTP/1.1 path): the app never gets the body as complete.
				resp = raw(t, "Trailer: X-Checksum\r\n", "X-Checksum: abc\r\nContent-Length: 35\r\n")
				if resp != nil && resp.Header.Get("Seen-Bytes") != "" {
					t.Errorf("a Content-Length trailer reached the app: %v", resp.Header)
				}
			})
			if !a.unannounced {
				return
			}
			t.Run("none announced", func(t *testing.T) {
				resp := raw(t, "", "X-Sum: 7\r\nX-Sum: 8\r\nMS-ASPNETCORE-TOKEN: forged\r\n")
				if resp == nil || resp.StatusCode != 200 || resp.Header.Get("Seen-Bytes") != "5" ||
					resp.Header.Get("Seen-Trailers") != "x-sum=7;x-sum=8" {
					t.Errorf("the app saw %v", resp)
				}
			})
		})
	}
}
