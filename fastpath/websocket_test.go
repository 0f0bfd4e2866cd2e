package fastpath

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
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
