package fastpath

import (
	"bufio"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestDropHopFieldsOrder: whatever the place of the hop-by-hop fields among
// the others, and whether or not a same-name field spans them, the fields
// that stay keep the backend's order, on a head read fresh and on one
// fasthttp reuses for the next response.
func TestDropHopFieldsOrder(t *testing.T) {
	for _, tc := range []struct {
		name, fields      string
		forwardConnection bool
		want              []string // the ordinary fields left, in order
		close             bool     // Connection: close left set
	}{
		{"none", "X-A: 1\r\nX-B: 2\r\n", false, []string{"X-A: 1", "X-B: 2"}, false},
		{"last, as Node sends them", "X-Powered-By: Express\r\nDate: d\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n", false,
			[]string{"X-Powered-By: Express"}, false},
		{"first", "Keep-Alive: timeout=5\r\nX-A: 1\r\nX-A: 2\r\nX-B: 3\r\n", false, []string{"X-A: 1", "X-A: 2", "X-B: 3"}, false},
		{"between same-name fields", "X-A: 1\r\nX-B: 1\r\nKeep-Alive: timeout=5\r\nX-C: 1\r\nX-A: 2\r\nX-B: 2\r\n", false,
			[]string{"X-A: 1", "X-B: 1", "X-C: 1", "X-A: 2", "X-B: 2"}, false},
		{"same-name fields after it only", "X-A: 1\r\nProxy-Connection: keep-alive\r\nX-B: 1\r\nX-B: 2\r\nX-C: 1\r\n", false,
			[]string{"X-A: 1", "X-B: 1", "X-B: 2", "X-C: 1"}, false},
		{"several", "Keep-Alive: a\r\nX-A: 1\r\nProxy-Connection: b\r\nX-A: 2\r\nConnection: keep-alive\r\nX-A: 3\r\n", false,
			[]string{"X-A: 1", "X-A: 2", "X-A: 3"}, false},
		{"Connection forwarded", "X-A: 1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 2\r\n", true,
			[]string{"X-A: 1", "Connection: keep-alive", "X-A: 2"}, false},
		{"Connection: close forwarded", "X-A: 1\r\nKeep-Alive: timeout=5\r\nConnection: close\r\nX-A: 2\r\n", true,
			[]string{"X-A: 1", "X-A: 2"}, true},
		{"Connection: close dropped", "X-A: 1\r\nKeep-Alive: timeout=5\r\nConnection: close\r\nX-A: 2\r\n", false,
			[]string{"X-A: 1", "X-A: 2"}, false},
		{"chunked", "X-A: 1\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\nX-A: 2\r\n", false,
			[]string{"X-A: 1", "X-A: 2"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rh fasthttp.ResponseHeader
			var scratch fieldScratch
			framing := "Content-Length: 0\r\n"
			if strings.Contains(tc.fields, "chunked") {
				framing = ""
			}
			head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + tc.fields + framing + "\r\n"
			for i := range 2 {
				rh.Reset()
				rh.EnableNormalizing() // as readHead reads it
				if err := rh.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
					t.Fatal(err)
				}
				filterResponseHead(&rh, tc.forwardConnection, &scratch)
				var got []string
				for k, v := range rh.All() {
					// fasthttp writes its own Date and framing, whatever rh holds.
					switch string(k) {
					case fasthttp.HeaderDate, fasthttp.HeaderTransferEncoding:
						continue
					}
					if !specialResponseField(k) && !closeFlag(k, v) {
						got = append(got, string(k)+": "+string(v))
					}
				}
				if !slices.Equal(got, tc.want) || rh.ConnectionClose() != tc.close {
					t.Errorf("head %d: fields %q, close %v; want %q, close %v", i, got, rh.ConnectionClose(), tc.want, tc.close)
				}
				if string(rh.ContentType()) != "text/plain" {
					t.Errorf("head %d: Content-Type %q", i, rh.ContentType())
				}
			}
		})
	}
}
