package fastpath

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/loopgate/loopgate/configload"
)

func TestWebSocketEcho(t *testing.T) {
	seen := make(chan http.Header, 1)
	backend := httptest.NewServer(websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			h := r.Header.Clone()
			h.Set("X-Seen-Upgrade", r.Header.Get("Upgrade"))
			seen <- h
			return nil
		},
		Handler: func(ws *websocket.Conn) {
			for {
				var msg string
				if err := websocket.Message.Receive(ws, &msg); err != nil {
					return
				}
				if err := websocket.Message.Send(ws, "echo: "+msg); err != nil {
					return
				}
			}
		},
	})
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	b := h.backend("/", backend.Listener.Addr().String())

	cfg, err := websocket.NewConfig("ws://"+h.addr+"/chat", "http://origin.example/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"Ms-Aspnetcore-Token": {"forged"}}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("upgrade through loopgate: %v", err)
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := recv(t, seen)
	if hdr.Get("Ms-Aspnetcore-Token") != b.token || hdr.Get("X-Seen-Upgrade") != "websocket" {
		t.Errorf("backend saw token %q upgrade %q", hdr.Get("Ms-Aspnetcore-Token"), hdr.Get("X-Seen-Upgrade"))
	}
	// Messages both ways, including one larger than a relay buffer.
	for i, msg := range []string{"hello", strings.Repeat("x", 100<<10), "bye"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
		if got != "echo: "+msg {
			t.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(msg)+6)
		}
	}
	if n := h.srv.InFlight(); n != 1 {
		t.Errorf("in flight during the tunnel: %d, want 1", n)
	}
	ws.Close()
	i := h.obs.wait(t, 1)
	if !i.Upgraded || i.Status != 101 || i.BytesIn < 100<<10 || i.BytesOut < 100<<10 || i.PID != b.pid {
		t.Errorf("observer %+v", i)
	}
	waitFor(t, func() bool { return b.released.Load() == 1 && h.srv.InFlight() == 0 }, "backend released after the tunnel closed")
}

func TestWebSocketRefused(t *testing.T) {
	// A backend that answers the upgrade with an ordinary response.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no websockets here", http.StatusForbidden)
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	h.backend("/", backend.Listener.Addr().String())
	c := dialRaw(t, h.addr)
	r, body := c.roundTrip("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if r.StatusCode != 403 || !strings.Contains(string(body), "no websockets") {
		t.Errorf("%d %q: the refusal must pass as an ordinary response", r.StatusCode, body)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wsUpgrade is a WebSocket upgrade request as a client sends it.
const wsUpgrade = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// wsClose is an unmasked close frame with status 1000 (a server's).
var wsClose = []byte{0x88, 0x02, 0x03, 0xe8}

// TestWebSocketEndPropagates: whichever side of a tunnel ends, the other
// side sees its connection end within a second, after everything sent
// before the end. (Defect 3 of issue 13: fasthttp's hijacked connection
// ignores Close, so a backend that ended left the client open until the
// client sent something.)
func TestWebSocketEndPropagates(t *testing.T) {
	const within = time.Second
	type backendEnd func(c net.Conn)
	cases := []struct {
		name string
		end  backendEnd // nil: the client ends instead
		// client is how the client ends when end is nil.
		client func(c *net.TCPConn)
		frame  []byte // what the client must read before its end
	}{
		{name: "backend close frame then FIN", end: func(c net.Conn) { c.Write(wsClose); c.Close() }, frame: wsClose},
		{name: "backend FIN", end: func(c net.Conn) { c.Close() }},
		{name: "backend reset", end: func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }},
		{name: "backend close frame then reset", end: func(c net.Conn) {
			c.Write(wsClose)
			time.Sleep(50 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}, frame: wsClose},
		{name: "client close", client: func(c *net.TCPConn) { c.Close() }},
		{name: "client half-close", client: func(c *net.TCPConn) { c.CloseWrite() }},
		{name: "client reset", client: func(c *net.TCPConn) { c.SetLinger(0); c.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			endBackend := make(chan struct{})
			backendSawEnd := make(chan time.Duration, 1)
			addr := rawBackend(t, func(c net.Conn) {
				br, ok := answerUpgrade(c)
				if !ok {
					return
				}
				if tc.end != nil {
					select {
					case <-endBackend:
					case <-time.After(10 * time.Second):
					}
					tc.end(c)
					return
				}
				// Wait for the client's end, reading everything.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var since time.Time
				for {
					if _, err := br.ReadByte(); err != nil {
						backendSawEnd <- time.Since(since)
						return
					}
					if since.IsZero() {
						since = time.Now() // the client's marker byte arrived
					}
				}
			})
			h := newHarness(t, Config{}, "/")
			b := h.backend("/", addr)
			c := dialRaw(t, h.addr)
			c.send(wsUpgrade)
			r, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
			if err != nil || r.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", r, err)
			}
			waitFor(t, func() bool { return h.srv.InFlight() == 1 }, "tunnel open")
			if tc.end != nil {
				start := time.Now()
				close(endBackend)
				_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, err := io.ReadAll(c.br)
				took := time.Since(start)
				c.c.Close() // as a WebSocket client does at the end of its stream
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("client connection still open %v after the backend ended", took)
				}
				if !bytes.Equal(got, tc.frame) {
					t.Errorf("client read % x before the end, want % x", got, tc.frame)
				}
				if took > within {
					t.Errorf("client saw the end after %v, want under %v", took, within)
				}
			} else {
				c.send("x") // marker: the backend starts its clock
				time.Sleep(20 * time.Millisecond)
				tc.client(c.c.(*net.TCPConn))
				select {
				case d := <-backendSawEnd:
					if d > within+100*time.Millisecond {
						t.Errorf("backend saw the client's end after %v", d)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("backend connection still open 5 s after the client ended")
				}
			}
			waitFor(t, func() bool { return b.released.Load() == 1 && h.srv.InFlight() == 0 }, "backend released after the tunnel ended")
		})
	}
}

// TestWebSocketShutdownClosesTunnel: Shutdown closes an open tunnel at once
// (both connections) and releases its backend, so a drain with an open
// WebSocket does not wait for the drain timeout or kill the backend.
func TestWebSocketShutdownClosesTunnel(t *testing.T) {
	backendEnded := make(chan struct{})
	addr := rawBackend(t, func(c net.Conn) {
		br := newReader(c)
		if _, err := readRawRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, br)
		close(backendEnded)
	})
	h := newHarness(t, Config{}, "/")
	b := h.backend("/", addr)
	c := dialRaw(t, h.addr)
	c.send(wsUpgrade)
	if r, err := http.ReadResponse(c.br, &http.Request{Method: "GET"}); err != nil || r.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", r, err)
	}
	waitFor(t, func() bool { return h.srv.InFlight() == 1 }, "tunnel open")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if !c.closedByPeer(2 * time.Second) {
		t.Error("client connection still open after Shutdown")
	}
	select {
	case <-backendEnded:
	case <-time.After(2 * time.Second):
		t.Error("backend connection still open after Shutdown")
	}
	waitFor(t, func() bool { return b.released.Load() == 1 && h.srv.InFlight() == 0 }, "backend released after Shutdown")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown with an open tunnel took %v", d)
	}
}

// TestWebSocketOutlivesRequestTimeout: requestTimeout bounds the wait for
// the backend's answer to the upgrade, not the tunnel: a WebSocket busy or
// idle for longer than requestTimeout stays open. (The deadline set for
// the upgrade's exchange used to stay on the backend connection and cut
// every tunnel, busy or not, requestTimeout after it began: 2 minutes by
// default.)
func TestWebSocketOutlivesRequestTimeout(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		br := newReader(c)
		if _, err := readRawRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, br) // echo bytes
	})
	h := newHarness(t, Config{}, "/")
	h.setSpec("/", func(s *configload.AppSpec) { s.RequestTimeout = 200 * time.Millisecond })
	h.backend("/", addr)
	c := dialRaw(t, h.addr)
	c.send(wsUpgrade)
	if r, err := http.ReadResponse(c.br, &http.Request{Method: "GET"}); err != nil || r.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", r, err)
	}
	echo := func(what string) {
		t.Helper()
		c.send("x")
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := c.br.ReadByte(); err != nil || b != 'x' {
			t.Fatalf("%s: echo %q %v", what, b, err)
		}
	}
	for range 10 { // busy for 5 requestTimeouts
		echo("busy tunnel")
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // idle for 2.5 requestTimeouts
	echo("after an idle spell")
}
