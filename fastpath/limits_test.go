package fastpath

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestEdgeLimits(t *testing.T) {
	h := newHarness(t, Config{
		MaxHeaderBytes:    4096,
		HeaderReadTimeout: 300 * time.Millisecond,
		IdleTimeout:       300 * time.Millisecond,
		MaxConns:          2,
	}, "/")
	addr, got := capturingBackend(t, okResponse)
	h.backend("/", addr)

	t.Run("header block over MaxHeaderBytes gets 431", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		r, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("c", 5000) + "\r\n\r\n")
		if r.StatusCode != 431 {
			t.Errorf("status %d, want 431", r.StatusCode)
		}
		if !c.closedByPeer(time.Second) {
			t.Errorf("connection left open")
		}
	})

	t.Run("slow header gets 408 and is disconnected", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		c.send("GET / HTTP/1.1\r\nHost: a\r\n") // never finished
		start := time.Now()
		r, _ := c.response("GET")
		if r.StatusCode != 408 {
			t.Errorf("status %d, want 408", r.StatusCode)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("took %v", el)
		}
	})

	t.Run("idle keep-alive connection is closed", func(t *testing.T) {
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatal(r.StatusCode)
		}
		recv(t, got)
		if !c.closedByPeer(3 * time.Second) {
			t.Errorf("idle connection still open")
		}
	})

	t.Run("connections past MaxConns wait for a free slot", func(t *testing.T) {
		waitFor(t, func() bool { return h.srv.OpenConns() == 0 }, "earlier connections closed")
		a, b := dialRaw(t, h.addr), dialRaw(t, h.addr)
		for _, c := range []*rawConn{a, b} {
			if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
				t.Fatal(r.StatusCode)
			}
			recv(t, got)
		}
		third := dialRaw(t, h.addr) // the kernel accepts; loopgate does not yet
		third.send(get("a", "/third"))
		_ = third.c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
		if _, err := third.br.Peek(1); err == nil {
			t.Fatalf("third connection served past MaxConns")
		}
		select {
		case r := <-got:
			t.Fatalf("backend got %q past MaxConns", r.lines()[0])
		default:
		}
		a.c.Close()
		_ = third.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		r, _ := third.response("GET")
		if r.StatusCode != 200 || !strings.Contains(recv(t, got).lines()[0], "/third") {
			t.Errorf("third connection after a slot freed: %d", r.StatusCode)
		}
	})
}

// TestShutdownDrains: Shutdown waits for a response in flight, then
// refuses new connections.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part1-")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "part2")
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{}, "/")
	b := h.backend("/", backend.Listener.Addr().String())
	resp, err := h.client().Get(h.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- h.srv.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a response in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "part2" {
		t.Errorf("in-flight response: %q, %v", rest, err)
	}
	if err := recv(t, shut); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if b.released.Load() != 1 || h.srv.InFlight() != 0 {
		t.Errorf("released %d, in flight %d", b.released.Load(), h.srv.InFlight())
	}
	if _, err := http.Get(h.url("/")); err == nil {
		t.Errorf("new connection accepted after Shutdown")
	}
}
