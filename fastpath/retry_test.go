package fastpath

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopgate/loopgate/supervisor"
)

// TestRetryRule is the retry rule's documentation: which failed attempts
// forward makes again. One retry at most; only what cannot have reached the
// app, or an idempotent request with its body in memory that got no byte
// of response and whose process did not end by its own hand.
func TestRetryRule(t *testing.T) {
	type facts = retryFacts
	for _, c := range []struct {
		why   string
		st    stage
		facts facts
		want  bool
	}{
		{"refused or timed-out connect: nothing was sent", stageConnect, facts{}, true},
		{"refused connect, even for a POST with a streamed body", stageConnect, facts{streamed: true}, true},
		{"the write of the head failed: the backend had closed the connection", stageSend, facts{}, true},
		{"the write of a streamed request's head failed", stageSend, facts{streamed: true}, true},
		{"no byte of response to a GET: a stale connection or a dead backend", stageNoResponse, facts{idempotent: true}, true},
		{"no byte of response to a POST: it may have been processed", stageNoResponse, facts{}, false},
		{"no byte of response to a PUT whose body was streamed: it cannot be sent again", stageNoResponse, facts{idempotent: true, streamed: true}, false},
		{"a broken or timed-out response head: the app saw the request", stageBadResponse, facts{idempotent: true}, false},
		{"the redial after a stale pooled connection was refused: nothing was sent", stageRedial, facts{}, true},
		{"no byte of response to a GET, its process ended by its own hand (exit status, SIGABRT, SIGSEGV): the request may have killed it",
			stageNoResponse, facts{idempotent: true, exit: supervisor.ExitSelf}, false},
		{"no byte of response to a GET, its process killed from outside (SIGKILL, SIGTERM)", stageNoResponse, facts{idempotent: true, exit: supervisor.ExitKilled}, true},
		{"no byte of response to a GET, its process still running: a stale connection", stageNoResponse, facts{idempotent: true, exit: supervisor.ExitNone}, true},
		{"a refused connect is retried whatever became of the process", stageConnect, facts{exit: supervisor.ExitSelf}, true},
		{"a second failure is never retried (connect)", stageConnect, facts{attempt: 1}, false},
		{"a second failure is never retried (no response)", stageNoResponse, facts{attempt: 1, idempotent: true}, false},
	} {
		if got := retryable(c.st, c.facts); got != c.want {
			t.Errorf("%s: retryable(%d, %+v) = %v, want %v", c.why, c.st, c.facts, got, c.want)
		}
	}
}

// TestRetryRules: a refused connect is retried once on another slot; a stale
// pooled connection is retried for an idempotent bodiless request; a
// request that reached the backend is never sent twice.
func TestRetryRules(t *testing.T) {
	t.Run("refused connect goes to the next slot", func(t *testing.T) {
		deadAddr := refusedAddr(t)
		addr, got := capturingBackend(t, okResponse)
		h := newHarness(t, Config{}, "/")
		bDead := h.backend("/", deadAddr)
		bLive := h.backend("/", addr)
		c := dialRaw(t, h.addr)
		r, _ := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
		if r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		if req := recv(t, got); string(req.body) != "abc" {
			t.Errorf("body %q", req.body)
		}
		// Release happens when the response is done, just after the client read it.
		waitFor(t, func() bool { return bLive.released.Load() == 1 }, "live backend released")
		if bDead.unreachable.Load() != 1 || bDead.released.Load() != bDead.acquired.Load() || bLive.released.Load() != 1 {
			t.Errorf("dead: unreachable %d acquired %d released %d; live released %d",
				bDead.unreachable.Load(), bDead.acquired.Load(), bDead.released.Load(), bLive.released.Load())
		}
		// /status counts served requests: the dead one served none.
		if bDead.unused.Load() != bDead.released.Load() || bLive.unused.Load() != 0 {
			t.Errorf("released unused: dead %d of %d, live %d", bDead.unused.Load(), bDead.released.Load(), bLive.unused.Load())
		}
		if i := h.obs.wait(t, 1); !i.Retried || i.PID != bLive.pid {
			t.Errorf("observer %+v", i)
		}
	})

	t.Run("both slots refused: 502.3", func(t *testing.T) {
		deadAddr := refusedAddr(t)
		h := newHarness(t, Config{}, "/")
		b := h.backend("/", deadAddr)
		c := dialRaw(t, h.addr)
		r, body := c.roundTrip(get("a", "/"))
		if r.StatusCode != 502 || !strings.Contains(string(body), "HTTP Error 502.3") {
			t.Errorf("%d %q", r.StatusCode, body)
		}
		// The retry is handed the same (only) process and asks again a
		// bounded number of times before it tries it: every acquire is
		// released, and two connects were made.
		waitFor(t, func() bool { return b.released.Load() == b.acquired.Load() }, "every acquire released")
		if b.unreachable.Load() != 2 || b.acquired.Load() != 2+sameBackendRetries {
			t.Errorf("unreachable %d acquired %d, want 2 and %d", b.unreachable.Load(), b.acquired.Load(), 2+sameBackendRetries)
		}
	})

	t.Run("a retry does not go back to the process that just failed", func(t *testing.T) {
		deadAddr := refusedAddr(t)
		addr, got := capturingBackend(t, okResponse)
		h := newHarness(t, Config{}, "/")
		bDead := h.backend("/", deadAddr)
		h.backend("/", addr)
		// The retry's first acquire gets the dead process again, as it
		// does when the supervisor has not yet seen it die.
		h.apps["/"].next.Store(0)
		bs := h.apps["/"].list()
		h.apps["/"].setBackends(bs[0], bDead, bs[1])
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatalf("status %d", r.StatusCode)
		}
		recv(t, got)
		if n := bDead.unreachable.Load(); n != 1 {
			t.Errorf("dead process tried %d times, want 1", n)
		}
	})

	t.Run("POST never goes out on a connection the backend already closed", func(t *testing.T) {
		var posts atomic.Int64
		closer := rawBackend(t, func(c net.Conn) {
			r, err := readRawRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			if strings.HasPrefix(r.head, "POST") {
				posts.Add(1)
			}
			io.WriteString(c, okResponse) // keep-alive claimed, then closed
		})
		h := newHarness(t, Config{}, "/")
		h.backend("/", closer)
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatal(r.StatusCode)
		}
		time.Sleep(50 * time.Millisecond) // the backend's FIN reaches the pooled connection
		if r, _ := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"); r.StatusCode != 200 {
			t.Errorf("POST after the pooled connection was closed: %d", r.StatusCode)
		}
		if i := h.obs.wait(t, 2); i.Retried || posts.Load() != 1 {
			t.Errorf("retried %v, backend saw %d POSTs; want a fresh connection up front", i.Retried, posts.Load())
		}
	})

	// A backend that keeps the connection after a response, then closes it
	// when the next request arrives without answering: a stale pool entry
	// as seen from loopgate.
	var seen atomic.Int64
	stale := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readRawRequest(br); err != nil {
			return
		}
		seen.Add(1)
		io.WriteString(c, okResponse)
		// Drop the next request on the floor.
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := readRawRequest(br); err == nil {
			seen.Add(1)
		}
	})

	t.Run("idempotent request on a connection that dies is retried", func(t *testing.T) {
		seen.Store(0)
		h := newHarness(t, Config{}, "/")
		h.backend("/", stale)
		c := dialRaw(t, h.addr)
		for i := 0; i < 2; i++ {
			if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
				t.Fatalf("request %d: %d", i, r.StatusCode)
			}
		}
		if i := h.obs.wait(t, 2); !i.Retried {
			t.Errorf("second request not marked retried: %+v", i)
		}
	})

	t.Run("idempotent request whose backend died before answering is resent, body and all", func(t *testing.T) {
		var conns atomic.Int64
		bodies := make(chan string, 4)
		dies := rawBackend(t, func(c net.Conn) {
			r, err := readRawRequest(bufio.NewReader(c))
			if err != nil {
				return
			}
			bodies <- string(r.body)
			if conns.Add(1)%2 == 1 {
				return // read it, then die without a byte of answer
			}
			io.WriteString(c, okResponse)
		})
		h := newHarness(t, Config{}, "/")
		h.backend("/", dies)
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"); r.StatusCode != 200 {
			t.Fatalf("PUT whose first backend connection died: %d, want 200", r.StatusCode)
		}
		if a, b := recv(t, bodies), recv(t, bodies); a != "abc" || b != "abc" {
			t.Errorf("bodies %q and %q, want abc twice", a, b)
		}
		if i := h.obs.wait(t, 1); !i.Retried {
			t.Errorf("not marked retried: %+v", i)
		}
	})

	t.Run("non-idempotent request that reached the backend is not resent", func(t *testing.T) {
		seen.Store(0)
		h := newHarness(t, Config{}, "/")
		h.backend("/", stale)
		c := dialRaw(t, h.addr)
		if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
			t.Fatal(r.StatusCode)
		}
		r, _ := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
		if r.StatusCode != 502 {
			t.Errorf("POST whose connection died after it was read: %d, want 502", r.StatusCode)
		}
		if n := seen.Load(); n != 2 {
			t.Errorf("backend saw %d requests, want 2 (the POST once)", n)
		}
	})
}
