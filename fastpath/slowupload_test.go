package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// An upload that streams for longer than requestTimeout to an app that
// reads it steadily and answers at its end is answered: requestTimeout is
// the time waiting for the app (ANCM: an inactivity timeout per WinHTTP
// operation, the response wait starting after the body is sent), and this
// app was never idle. The response head's read deadline used to be set once
// when the head went out, so such an upload got 502.3 after requestTimeout.
func TestSlowUploadOutlivesRequestTimeout(t *testing.T) {
	const (
		rt     = 2 * time.Second
		pieces = 20 // one every 200 ms: 4 s in all
		piece  = 16 << 10
	)
	for _, framing := range []string{"Content-Length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			addr, seen := bodyBackend(t)
			h := newHarness(t, Config{}, "/")
			h.backend("/", addr)
			h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = rt })
			c := dialRaw(t, h.addr)
			_ = c.c.SetDeadline(time.Now().Add(20 * time.Second))
			if framing == "chunked" {
				c.send("POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
			} else {
				c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(pieces*piece) + "\r\n\r\n")
			}
			start := time.Now()
			for i := 0; i < pieces; i++ {
				p := strings.Repeat("x", piece)
				if framing == "chunked" {
					p = strconv.FormatInt(piece, 16) + "\r\n" + p + "\r\n"
				}
				c.send(p)
				time.Sleep(200 * time.Millisecond)
			}
			if framing == "chunked" {
				c.send("0\r\n\r\n")
			}
			resp, body := c.response("POST")
			if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Length") != strconv.Itoa(pieces*piece) {
				t.Fatalf("an upload of %v to an app reading it steadily, requestTimeout %v: %d %q (length %q)",
					time.Since(start).Round(time.Millisecond), rt, resp.StatusCode, body, resp.Header.Get("X-Echo-Length"))
			}
			if o := recv(t, seen); !o.complete || o.n != pieces*piece {
				t.Errorf("the app saw %+v", o)
			}
		})
	}
	t.Run("HTTP/2", func(t *testing.T) {
		h := newTLSHarness(t, Config{})
		h.backend(func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			w.Header().Set("X-Echo-Length", strconv.FormatInt(n, 10))
		})
		h.setSpec(func(s *configload.AppSpec) { s.RequestTimeout = rt })
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < pieces; i++ {
				if _, err := pw.Write(bytes.Repeat([]byte("x"), piece)); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", h.url("/upload"), pr)
		req.ContentLength = pieces * piece
		resp := do(t, h.client(true), req, true)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Length") != strconv.Itoa(pieces*piece) {
			t.Fatalf("HTTP/2 upload of 4 s, requestTimeout %v: %d (length %q)", rt, resp.StatusCode, resp.Header.Get("X-Echo-Length"))
		}
	})
}

// requestTimeout still bounds the wait on an app that stops reading an
// upload and never answers: 502.3 naming the timeout, about requestTimeout
// after the app stopped taking bytes.
func TestStalledAppUploadTimesOut(t *testing.T) {
	addr, _ := stalledBackend(t, 4096)
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout, s.MaxAllowedContentLength = time.Second, 1<<40 })
	c := dialRaw(t, h.addr)
	_ = c.c.SetDeadline(time.Now().Add(20 * time.Second))
	c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 67108864\r\n\r\n")
	start := time.Now()
	go func() { _, _ = c.c.Write(make([]byte, 64<<20)) }() // blocks once every buffer is full
	resp, body := c.response("POST")
	d := time.Since(start)
	if resp.StatusCode != 502 || !strings.Contains(string(body), "requestTimeout") {
		t.Fatalf("an app that stopped reading: %d %q, want 502.3 naming requestTimeout", resp.StatusCode, body)
	}
	t.Logf("502.3 %v after the upload started", d.Round(time.Millisecond))
	if d > 6*time.Second {
		t.Errorf("502.3 after %v, want about requestTimeout (1 s)", d)
	}
}

// stalledBackend is a raw TCP app with a small receive buffer that reads a
// request head and then stops reading, until the test ends; each accepted
// connection is sent on conns.
func stalledBackend(t *testing.T, rcvbuf int) (addr string, conns chan net.Conn) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case conns <- c:
			default:
			}
			go func() {
				<-done
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { close(done); ln.Close() })
	return ln.Addr().String(), conns
}

// A client that disconnects (FIN or RST) while loopgate is blocked writing
// its upload to an app that stopped reading makes loopgate close the
// backend connection within about a second, not at requestTimeout: the
// request leaves flight, the upstream connection is freed, and the app's
// read of the body ends before its end. (TestCutSizedUploadClosesBackend
// covers an app that keeps reading.)
func TestClientGoneWhileAppStalled(t *testing.T) {
	const length = 1 << 30
	for _, tc := range []struct {
		name string
		fill int // bytes sent at most before the cut
		cut  func(c *net.TCPConn) error
	}{
		// A FIN queued behind bytes loopgate has no room for reaches it
		// only as the app reads them (TCP delivers in order): this client
		// stops sending once loopgate stopped reading it (its writes to
		// the app are blocked), before loopgate's receive buffer is full.
		{"FIN", 0, func(c *net.TCPConn) error { return c.CloseWrite() }},
		// A reset arrives whatever is queued: this client fills every
		// buffer on the way.
		{"RST", 256 << 20, func(c *net.TCPConn) error { _ = c.SetLinger(0); return c.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := stalledBackend(t, 4096)
			h := newHarness(t, Config{}, "/")
			fb := h.backend("/", addr)
			h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout, s.MaxAllowedContentLength = 20*time.Second, 1<<40 })
			c := dialRaw(t, h.addr)
			c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n")
			// Send until every buffer on the way is full: loopgate is
			// blocked writing to the app.
			buf := make([]byte, 64<<10)
			sent := 0
			if tc.fill == 0 {
				buf = buf[:32<<10]
			}
			for tc.fill == 0 || sent < tc.fill {
				_ = c.c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.c.Write(buf)
				sent += n
				if err != nil || sent >= 256<<20 {
					break
				}
				if tc.fill == 0 {
					// Bytes left unread: loopgate's pump stopped reading,
					// blocked on the app (loopgate's buffers toward it
					// took some MiB first).
					time.Sleep(10 * time.Millisecond)
					if tcpRxQueue(t, h.addr, c.c.LocalAddr().String()) > 0 {
						break
					}
				}
			}
			if sent >= 256<<20 {
				t.Fatal("256 MiB taken by an app that reads nothing")
			}
			app := recv(t, conns)
			at := time.Now()
			if err := tc.cut(c.c.(*net.TCPConn)); err != nil {
				t.Fatal(err)
			}
			for h.srv.InFlight() != 0 || fb.up.busy.Load() != 0 {
				if d := time.Since(at); d > 3*time.Second {
					t.Fatalf("%v after the client's %s (%d of %d bytes sent, requestTimeout 20 s): %d requests in flight, %d busy upstream connections",
						d.Round(time.Millisecond), tc.name, sent, length, h.srv.InFlight(), fb.up.busy.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("backend connection closed %v after the client's %s (%d bytes sent)", time.Since(at).Round(time.Millisecond), tc.name, sent)
			// The app, reading again, meets the end of its connection
			// long before the body's end.
			_ = app.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := io.Copy(io.Discard, app)
			if err != nil || n >= length {
				t.Errorf("the app read %d bytes then %v, want the connection's end before %d", n, err, length)
			}
		})
	}
	// HTTP/2: the client resets the stream (the Go server reads frames
	// whatever the handler does, so the reset is seen at once; h2.go's
	// watch closes the backend connection).
	t.Run("HTTP/2 RST_STREAM", func(t *testing.T) {
		addr, conns := stalledBackend(t, 4096)
		h := newTLSHarness(t, Config{})
		up := newUpstream(addr, &h.srv.cfg)
		t.Cleanup(up.Close)
		fb := &fakeBackend{addr: addr, token: "h2-token", pid: 77, up: up}
		h.app.addBackend(fb)
		h.setSpec(func(s *configload.AppSpec) { s.RequestTimeout, s.MaxAllowedContentLength = 20*time.Second, 1<<40 })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pr, pw := io.Pipe()
		wrote := make(chan int, 1)
		go func() {
			buf := make([]byte, 64<<10)
			n := 0
			defer func() { wrote <- n }()
			for n < 256<<20 {
				m, err := pw.Write(buf)
				n += m
				if err != nil {
					return
				}
			}
		}()
		req, _ := http.NewRequestWithContext(ctx, "POST", h.url("/upload"), pr)
		req.ContentLength = length
		go func() {
			if resp, err := h.client(true).Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		app := recv(t, conns)
		time.Sleep(time.Second) // every buffer fills; loopgate's pump is blocked on the app
		at := time.Now()
		cancel()
		pw.CloseWithError(context.Canceled)
		for h.srv.InFlight() != 0 || up.busy.Load() != 0 {
			if d := time.Since(at); d > 3*time.Second {
				t.Fatalf("%v after the client's RST_STREAM: %d requests in flight, %d busy upstream connections", d.Round(time.Millisecond), h.srv.InFlight(), up.busy.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("backend connection closed %v after the client's RST_STREAM", time.Since(at).Round(time.Millisecond))
		_ = app.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, app)
		if err != nil || n >= length {
			t.Errorf("the app read %d bytes then %v, want the connection's end before %d", n, err, length)
		}
		if n := recv(t, wrote); n >= 256<<20 {
			t.Error("256 MiB taken by an app that reads nothing")
		}
	})
	// A client that sent its whole body and half-closed, while loopgate
	// waits on an app that pauses reading, still gets its answer.
	t.Run("complete, then half-closed, app paused", func(t *testing.T) {
		const size = 256 << 10
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		sentAll := make(chan time.Time, 1)
		go func() {
			bs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case at := <-sentAll:
					time.Sleep(time.Until(at.Add(2 * time.Second)))
				case <-time.After(5 * time.Second):
				}
				n, err := io.Copy(io.Discard, r.Body)
				if err == nil {
					w.Header().Set("X-Echo-Length", strconv.FormatInt(n, 10))
				}
			})}
			_ = bs.Serve(ln)
		}()
		h := newHarness(t, Config{}, "/")
		h.backend("/", ln.Addr().String())
		h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = 20 * time.Second })
		c := dialRaw(t, h.addr)
		c.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n" + strings.Repeat("x", size))
		if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		sentAll <- time.Now()
		resp, _ := c.response("POST")
		if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Length") != strconv.Itoa(size) {
			t.Errorf("complete body then half-close, app paused 2 s: %d (length %q)", resp.StatusCode, resp.Header.Get("X-Echo-Length"))
		}
	})
}

// tcpRxQueue is how many bytes received on the local TCP socket local
// (connected to remote) its reader has not read, from /proc/net/tcp.
func tcpRxQueue(t *testing.T, local, remote string) int {
	t.Helper()
	hex := func(a string) string {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			t.Fatal(err)
		}
		ip := ap.Addr().As4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	}
	l, r := hex(local), hex(remote)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[1] == l && f[2] == r {
			_, rx, _ := strings.Cut(f[4], ":")
			n, _ := strconv.ParseInt(rx, 16, 64)
			return int(n)
		}
	}
	t.Fatalf("no socket %s -> %s in /proc/net/tcp", local, remote)
	return 0
}

// With backendProtocol="h2c": an HTTP/1.1 client's upload of 4 s to an app
// reading it steadily, requestTimeout 2 s, is answered; a client that
// resets its connection while the app takes no body (the HTTP/2 client
// waits on the app's flow control, nothing reads the client) ends the
// request within about a second, not at requestTimeout.
func TestH2CUploadTimingAndClientGone(t *testing.T) {
	dial := func(t *testing.T, h *tlsHarness) (*tls.Conn, net.Conn) {
		raw, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		_ = raw.SetDeadline(time.Now().Add(20 * time.Second))
		return tls.Client(raw, &tls.Config{RootCAs: h.roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}), raw
	}
	t.Run("slow upload", func(t *testing.T) {
		const pieces, piece = 20, 16 << 10
		h := newTLSHarness(t, Config{})
		h.h2cBackend(func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err == nil {
				w.Header().Set("X-Echo-Length", strconv.FormatInt(n, 10))
			}
		})
		h.setSpec(func(s *configload.AppSpec) { s.RequestTimeout = 2 * time.Second })
		c, _ := dial(t, h)
		rc := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
		rc.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(pieces*piece) + "\r\n\r\n")
		for i := 0; i < pieces; i++ {
			rc.send(strings.Repeat("x", piece))
			time.Sleep(200 * time.Millisecond)
		}
		resp, _ := rc.response("POST")
		if resp.StatusCode != 200 || resp.Header.Get("X-Echo-Length") != strconv.Itoa(pieces*piece) {
			t.Fatalf("h2c app, 4 s upload, requestTimeout 2 s: %d (length %q)", resp.StatusCode, resp.Header.Get("X-Echo-Length"))
		}
	})
	t.Run("RST while the app takes no body", func(t *testing.T) {
		h := newTLSHarness(t, Config{})
		h.h2cBackend(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		h.setSpec(func(s *configload.AppSpec) { s.RequestTimeout, s.MaxAllowedContentLength = 20*time.Second, 1<<40 })
		c, raw := dial(t, h)
		if _, err := c.Write([]byte("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64<<10)
		sent := 0
		for sent < 256<<20 {
			_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := c.Write(buf)
			sent += n
			if err != nil {
				break
			}
		}
		if sent >= 256<<20 || h.srv.InFlight() != 1 {
			t.Fatalf("before the reset: %d bytes taken, %d in flight", sent, h.srv.InFlight())
		}
		_ = raw.(*net.TCPConn).SetLinger(0)
		at := time.Now()
		raw.Close()
		for h.srv.InFlight() != 0 {
			if d := time.Since(at); d > 3*time.Second {
				t.Fatalf("%v after the client's RST (%d bytes sent, requestTimeout 20 s): %d in flight", d.Round(time.Millisecond), sent, h.srv.InFlight())
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("h2c: the request ended %v after the client's RST (%d bytes sent)", time.Since(at).Round(time.Millisecond), sent)
	})
}
