package fastpath

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

	t.Run("past MaxConns the longest-idle keep-alive connection makes room", func(t *testing.T) {
		waitFor(t, func() bool { return h.srv.OpenConns() == 0 }, "earlier connections closed")
		a, b := dialRaw(t, h.addr), dialRaw(t, h.addr)
		for _, c := range []*rawConn{a, b} {
			if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
				t.Fatal(r.StatusCode)
			}
			recv(t, got)
			time.Sleep(10 * time.Millisecond) // a is idle longer than b
		}
		third := dialRaw(t, h.addr)
		r, _ := third.roundTrip(get("a", "/third"))
		if r.StatusCode != 200 || !strings.Contains(recv(t, got).lines()[0], "/third") {
			t.Errorf("third connection: %d", r.StatusCode)
		}
		if !a.closedByPeer(time.Second) {
			t.Errorf("the longest-idle connection was not closed")
		}
		if r, _ := b.roundTrip(get("a", "/b-again")); r.StatusCode != 200 {
			t.Errorf("the other idle connection: %d", r.StatusCode)
		}
		recv(t, got)
	})
}

// TestMaxConnsBusyWait: past MaxConns with every connection busy, a new
// connection waits in the accept queue until one is free.
func TestMaxConnsBusyWait(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	h := newHarness(t, Config{MaxConns: 2}, "/")
	h.backend("/", backend.Listener.Addr().String())
	a, b := dialRaw(t, h.addr), dialRaw(t, h.addr)
	a.send(get("a", "/hold"))
	b.send(get("a", "/hold"))
	waitFor(t, func() bool { return h.srv.InFlight() == 2 }, "both requests in flight")
	third := dialRaw(t, h.addr) // the kernel accepts; loopgate does not yet
	third.send(get("a", "/third"))
	_ = third.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := third.br.Peek(1); err == nil {
		t.Fatalf("third connection served past MaxConns while both others were busy")
	}
	once.Do(func() { close(release) })
	for _, c := range []*rawConn{a, b} {
		if r, _ := c.response("GET"); r.StatusCode != 200 {
			t.Errorf("held request: %d", r.StatusCode)
		}
	}
	_ = third.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if r, _ := third.response("GET"); r.StatusCode != 200 {
		t.Errorf("third connection once the others were idle: %d", r.StatusCode)
	}
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
