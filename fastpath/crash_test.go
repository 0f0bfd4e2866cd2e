package fastpath

import (
	"bufio"
	"net"
	"sync/atomic"
	"testing"

	"github.com/loopgate/loopgate/supervisor"
)

// dyingBackend is a backend process as a poison request leaves it: it
// takes one connection, reads the request and is gone (its listener closed,
// the connection closed without a byte of answer). AwaitExit reports exit.
func dyingBackend(t *testing.T, h *harness, exit supervisor.ExitCause) (*fakeBackend, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var seen atomic.Int64
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := readRawRequest(bufio.NewReader(c)); err == nil {
			seen.Add(1)
		}
	}()
	b := h.backend("/", ln.Addr().String())
	b.exit.Store(uint32(exit))
	return b, &seen
}

// TestNoReplayAfterOwnHandExit: an idempotent request whose process ended
// by its own hand while it had the request (an exit status, SIGABRT,
// SIGSEGV) is not sent to the next process: the client gets 502.3 and the
// request counts against the process that died. One whose process was
// killed from outside (SIGKILL, SIGTERM), or whose end is not known
// (still going after the wait), is sent once more, to the next process.
func TestNoReplayAfterOwnHandExit(t *testing.T) {
	for _, tc := range []struct {
		exit   supervisor.ExitCause
		replay bool
	}{
		{supervisor.ExitSelf, false},
		{supervisor.ExitKilled, true},
		{supervisor.ExitNone, true},
	} {
		t.Run(tc.exit.String(), func(t *testing.T) {
			h := newHarness(t, Config{}, "/")
			dying, poisoned := dyingBackend(t, h, tc.exit)
			nextAddr, next := capturingBackend(t, okResponse)
			h.backend("/", nextAddr)
			c := dialRaw(t, h.addr)
			r, _ := c.roundTrip(get("a", "/poison"))
			i := h.obs.wait(t, 1)
			if tc.replay {
				if r.StatusCode != 200 || !i.Retried {
					t.Errorf("process ended %v: %d, retried %v; want 200 from the next process", tc.exit, r.StatusCode, i.Retried)
				}
				if got := recv(t, next); got.lines()[0] != "GET /poison HTTP/1.1" {
					t.Errorf("the next process got %q", got.lines()[0])
				}
				return
			}
			if r.StatusCode != 502 || i.Retried {
				t.Errorf("process ended by its own hand: %d, retried %v; want 502.3 and no replay", r.StatusCode, i.Retried)
			}
			if len(next) != 0 {
				t.Errorf("the request was replayed onto the next process: %q", (<-next).lines()[0])
			}
			if n := poisoned.Load(); n != 1 {
				t.Errorf("the dying process read %d requests, want 1", n)
			}
			if dying.released.Load() != 1 || dying.unused.Load() != 0 {
				t.Errorf("the dying process was released %d times (%d unused); want once, counted as served",
					dying.released.Load(), dying.unused.Load())
			}
		})
	}
}
