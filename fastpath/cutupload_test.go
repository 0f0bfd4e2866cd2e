package fastpath

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"

	"github.com/loopgate/loopgate/configload"
)

// bodyOutcome is what an app saw of a request body.
type bodyOutcome struct {
	n        int   // bytes read
	err      error // nil: the body ended as framed
	at       time.Time
	complete bool
}

// bodyBackend is an app that reads each request body to its end and
// reports what it got; it answers 200 only to a body that ended as framed.
func bodyBackend(t *testing.T) (addr string, seen chan bodyOutcome) {
	t.Helper()
	seen = make(chan bodyOutcome, 16)
	bs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		seen <- bodyOutcome{n: len(b), err: err, at: time.Now(), complete: err == nil}
		if err != nil {
			return
		}
		w.Header().Set("X-Echo-Length", strconv.Itoa(len(b)))
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(bs.Close)
	return strings.TrimPrefix(bs.URL, "http://"), seen
}

// statusAfterCut reads what the client gets after it cut its upload: the
// status code, or 0 when the connection ended without a response.
func statusAfterCut(t *testing.T, c *rawConn) int {
	t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("no answer and no close within 5 s of the client cutting its upload")
		}
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A chunked upload that the client half-closes before the last chunk never
// reaches the app as complete (loopgate used to write the terminator
// itself), and the client never gets a 2xx for it; cut at every point of
// the framing. A complete chunked body followed by a half-close is still
// answered.
func TestCutChunkedUploadNeverComplete(t *testing.T) {
	const head = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct{ name, sent string }{
		{"after the head", ""},
		{"after a chunk", "5\r\nhello\r\n"},
		{"inside a chunk", "5\r\nhello\r\n5\r\nwor"},
		{"inside a chunk size", "5\r\nhello\r\n5"},
		{"after the last chunk, before its CRLF", "5\r\nhello\r\n0\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, seen := bodyBackend(t)
			h := newHarness(t, Config{}, "/")
			h.backend("/", addr)
			c := dialRaw(t, h.addr)
			c.send(head + tc.sent)
			if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			status := statusAfterCut(t, c)
			if status >= 200 && status < 300 {
				t.Errorf("the client got %d for an upload it cut", status)
			}
			select {
			case o := <-seen:
				if o.complete {
					t.Errorf("the app read a complete body of %d bytes from an upload cut %s", o.n, tc.name)
				}
			case <-time.After(3 * time.Second):
				t.Error("the app never saw the upload end (a chunked body is streamed: the request reaches it at once)")
			}
		})
	}
	t.Run("complete, then half-closed", func(t *testing.T) {
		addr, seen := bodyBackend(t)
		h := newHarness(t, Config{}, "/")
		h.backend("/", addr)
		c := dialRaw(t, h.addr)
		c.send(head + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
		if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, body := c.response("POST")
		if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-Echo-Length") != "11" {
			t.Errorf("complete body then half-close: %d %q length %q", resp.StatusCode, body, resp.Header.Get("X-Echo-Length"))
		}
		if o := recv(t, seen); !o.complete || o.n != 11 {
			t.Errorf("the app saw %+v, want the whole 11-byte body", o)
		}
	})
}

// On HTTP/2, a request body the client cuts (RST_STREAM, or its connection
// closing) before END_STREAM never reaches the app as complete, with or
// without a content-length (one large enough to be streamed: a small body
// is read whole before the app is asked, and a cut one never reaches it).
func TestH2CutUploadNeverComplete(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length string // content-length, or "" for none (chunked to the app)
		cut    func(r *rawH2)
	}{
		{"RST_STREAM, no length", "", func(r *rawH2) { _, _ = r.c.Write(h2frame(0x3, 0, 1, []byte{0, 0, 0, 8})) }},
		{"RST_STREAM, with length", "20000", func(r *rawH2) { _, _ = r.c.Write(h2frame(0x3, 0, 1, []byte{0, 0, 0, 8})) }},
		{"connection closed, no length", "", func(r *rawH2) { _ = r.c.Close() }},
		{"connection closed, with length", "20000", func(r *rawH2) { _ = r.c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTLSHarness(t, Config{})
			seen := make(chan bodyOutcome, 4)
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				seen <- bodyOutcome{n: len(b), err: err, complete: err == nil}
			})
			r := dialRawH2(t, h)
			r.hb.Reset()
			fields := [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", h.addr}, {":path", "/echo"}}
			if tc.length != "" {
				fields = append(fields, [2]string{"content-length", tc.length})
			}
			for _, f := range fields {
				_ = r.he.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if _, err := r.c.Write(h2frame(0x1, 0x4, 1, r.hb.Bytes())); err != nil { // HEADERS, END_HEADERS
				t.Fatal(err)
			}
			if _, err := r.c.Write(h2frame(0x0, 0, 1, []byte("hello"))); err != nil { // DATA, no END_STREAM
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // the body is flowing to the app
			tc.cut(r)
			select {
			case o := <-seen:
				if o.complete {
					t.Errorf("the app read a complete body of %d bytes from a stream the client cut", o.n)
				}
			case <-time.After(3 * time.Second):
				t.Error("the app was left waiting for the rest of the body")
			}
		})
	}
}

// A client that disconnects (FIN or RST) during a Content-Length upload
// makes loopgate close the backend connection within about a second, not
// at requestTimeout: the app's read fails, the request leaves flight and
// the upstream connection is freed. A client that half-closes after its
// whole body still gets its answer.
func TestCutSizedUploadClosesBackend(t *testing.T) {
	const length = 100_000 // streamed (over smallBodyBytes)
	for _, tc := range []struct {
		name string
		cut  func(c *net.TCPConn) error
	}{
		{"FIN", func(c *net.TCPConn) error { return c.CloseWrite() }},
		{"RST", func(c *net.TCPConn) error { _ = c.SetLinger(0); return c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, seen := bodyBackend(t)
			h := newHarness(t, Config{}, "/")
			h.backend("/", addr)
			// Short enough that a failure does not hang the test for
			// minutes, long enough to tell from "about a second".
			h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = 10 * time.Second })
			c := dialRaw(t, h.addr)
			c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n" + strings.Repeat("x", 10_000))
			time.Sleep(100 * time.Millisecond) // the body is flowing to the app
			at := time.Now()
			if err := tc.cut(c.c.(*net.TCPConn)); err != nil {
				t.Fatal(err)
			}
			select {
			case o := <-seen:
				if o.complete {
					t.Errorf("the app read a complete body of %d bytes from an upload cut at 10000 of %d", o.n, length)
				}
				if d := o.at.Sub(at); d > 2*time.Second {
					t.Errorf("the app's read failed %v after the client's %s, want about a second at most", d, tc.name)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("the app was still waiting for the body 5 s after the client's %s (requestTimeout is 10 s)", tc.name)
			}
			if tc.name == "FIN" {
				if status := statusAfterCut(t, c); status >= 200 && status < 300 {
					t.Errorf("the client got %d for an upload it cut", status)
				}
			}
			deadline := time.Now().Add(3 * time.Second)
			for h.srv.InFlight() != 0 || h.apps["/"].list()[0].up.busy.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("3 s after the cut: %d requests in flight, %d busy upstream connections", h.srv.InFlight(), h.apps["/"].list()[0].up.busy.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	t.Run("small body (read before the app is asked), FIN", func(t *testing.T) {
		addr, seen := bodyBackend(t)
		h := newHarness(t, Config{}, "/")
		h.backend("/", addr)
		c := dialRaw(t, h.addr)
		c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("x", 100))
		if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if status := statusAfterCut(t, c); status >= 200 && status < 300 {
			t.Errorf("the client got %d for an upload it cut", status)
		}
		select {
		case o := <-seen:
			if o.complete {
				t.Errorf("the app read a complete body of %d bytes from an upload cut at 100 of 5000", o.n)
			}
		case <-time.After(200 * time.Millisecond): // it never reached the app
		}
	})
	for _, n := range []int{5, length} {
		t.Run("complete, then half-closed, "+strconv.Itoa(n)+" bytes", func(t *testing.T) {
			addr, seen := bodyBackend(t)
			h := newHarness(t, Config{}, "/")
			h.backend("/", addr)
			c := dialRaw(t, h.addr)
			c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + strings.Repeat("x", n))
			if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			resp, body := c.response("POST")
			if resp.StatusCode != 200 || string(body) != "ok" || resp.Header.Get("X-Echo-Length") != strconv.Itoa(n) {
				t.Errorf("complete body then half-close: %d %q length %q", resp.StatusCode, body, resp.Header.Get("X-Echo-Length"))
			}
			if o := recv(t, seen); !o.complete || o.n != n {
				t.Errorf("the app saw %+v, want the whole %d-byte body", o, n)
			}
		})
	}
}

// A TLS client that sends close_notify (tls.Conn.CloseWrite) in the middle
// of a chunked body, its TCP connection still open, ended its stream as
// surely as with a FIN: the app never reads the body as complete.
func TestCutChunkedUploadCloseNotify(t *testing.T) {
	h := newTLSHarness(t, Config{})
	seen := make(chan bodyOutcome, 4)
	h.backend(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		seen <- bodyOutcome{n: len(b), err: err, complete: err == nil}
	})
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, &tls.Config{RootCAs: h.roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if _, err := io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the chunk is flowing to the app
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-seen:
		if o.complete {
			t.Errorf("the app read a complete body of %d bytes from an upload cut by close_notify", o.n)
		}
	case <-time.After(5 * time.Second):
		t.Error("the app never saw the upload end")
	}
}
