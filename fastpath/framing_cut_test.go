package fastpath

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The framing corpus's cut bodies (see framing_corpus_test.go).

// cutStages are the places a client cuts an upload, for both framings:
// what it sends before its FIN or RST, and how many body bytes it declared
// (chunked: -1).
var cutStages = []struct {
	name    string
	sent    string
	declLen int
}{
	{"mid-head", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Enc", 0},
	{"chunked after the head", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", -1},
	{"chunked mid-chunk-size", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1", -1},
	{"chunked mid-chunk-data", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", -1},
	{"chunked after the data, before its CRLF", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", -1},
	{"chunked after a whole chunk", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", -1},
	{"chunked mid-last-chunk", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0", -1},
	{"chunked before the terminator", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", -1},
	{"chunked mid-trailer", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1", -1},
	{"Content-Length after the head", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n", 20000},
	{"Content-Length mid-body", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("b", 10000), 20000},
	{"Content-Length one byte short", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("b", 19999), 20000},
	{"small Content-Length mid-body", "POST /c-TAG HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("b", 50), 100},
}

// cutRecord is what the cut-body backend saw of one request.
type cutRecord struct {
	body     int  // body bytes received (chunked: decoded)
	done     bool // its read of the body ended (the fields below are set)
	complete bool // the body ended as framed (then it answered 200)
	closed   bool // its connection was closed (not timed out) before that
}

// TestCutBodiesNeverComplete: a client that sends FIN or RST at any stage
// of an upload (mid-head, mid-chunk-size, mid-chunk-data, before a chunk's
// CRLF or the terminator, mid-trailer, mid-Content-Length body), chunked
// or with a Content-Length, never makes the backend see a complete body:
// no terminating 0\r\n\r\n for a chunked one, fewer bytes than declared
// for a Content-Length one, and its connection closed within 3 s (or the
// request never reaches it); the client gets no 2xx.
func TestCutBodiesNeverComplete(t *testing.T) {
	var mu sync.Mutex
	recs := map[string]*cutRecord{}
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
			head.WriteString(line)
		}
		req := rawRequest{head: strings.TrimSuffix(head.String(), "\r\n")}
		rec := &cutRecord{}
		mu.Lock()
		recs[strings.Fields(req.lines()[0])[1]] = rec
		mu.Unlock()
		var got int64
		var err error
		if cl := req.values("Content-Length"); len(cl) == 1 {
			n, _ := strconv.Atoi(cl[0])
			got, err = io.CopyN(io.Discard, br, int64(n))
		} else {
			got, err = io.Copy(io.Discard, httputil.NewChunkedReader(br))
			if err == nil {
				_, err = br.ReadString('\n') // the CRLF ending the (empty) trailer section
			}
		}
		ne, timeout := err.(net.Error)
		mu.Lock()
		rec.body, rec.done, rec.complete = int(got), true, err == nil
		rec.closed = err != nil && !(timeout && ne.Timeout())
		mu.Unlock()
		if err == nil {
			io.WriteString(c, okResponse)
		}
	})
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	for i, st := range cutStages {
		for _, how := range []string{"FIN", "RST"} {
			tag := "cut" + strconv.Itoa(i) + how
			t.Run(st.name+"/"+how, func(t *testing.T) {
				t.Parallel()
				c := dialRaw(t, h.addr)
				c.send(strings.ReplaceAll(st.sent, "TAG", tag))
				time.Sleep(50 * time.Millisecond) // let loopgate forward what it can first
				if how == "FIN" {
					c.c.(*net.TCPConn).CloseWrite()
					_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if resp, err := http.ReadResponse(c.br, nil); err == nil && resp.StatusCode < 300 {
						t.Errorf("the client got %d for a cut upload", resp.StatusCode)
					}
				} else {
					c.c.(*net.TCPConn).SetLinger(0)
					c.c.Close()
				}
				// Either the request never reaches the backend (a cut
				// head; a body fasthttp reads before the handler runs:
				// up to 8 KiB), or its connection ends within 3 s.
				var rec cutRecord
				var seen bool
				for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					mu.Lock()
					if r := recs["/c-"+tag]; r != nil {
						rec, seen = *r, true
					}
					mu.Unlock()
					if rec.done {
						break
					}
				}
				switch {
				case !seen:
					return
				case !rec.done:
					t.Fatalf("the backend's connection was still open 3 s after the client's %s", how)
				case rec.complete:
					t.Errorf("the backend saw a complete body (%d bytes)", rec.body)
				case !rec.closed:
					t.Errorf("the backend's read timed out instead of failing")
				case st.declLen > 0 && rec.body >= st.declLen:
					t.Errorf("the backend got %d of %d bytes", rec.body, st.declLen)
				}
			})
		}
	}
}
