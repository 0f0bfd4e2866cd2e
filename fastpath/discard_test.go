package fastpath

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// TestEarlyAnswerDrainsBody: loopgate's own answer to a request whose body
// it did not need (503 with the offline page) comes after it read and
// dropped a body of up to maxDiscardBytes, so the client that kept sending
// gets the answer and a connection it can use again; a larger body closes
// the connection instead.
func TestEarlyAnswerDrainsBody(t *testing.T) {
	h := newHarness(t, Config{}, "/")
	h.apps["/"].offline = []byte("offline")
	h.apps["/"].setOutcome(supervisor.Offline)
	h.setSpec("/", func(s *configload.AppSpec) { s.MaxAllowedContentLength = 64 << 20 })

	c := dialRaw(t, h.addr)
	body := strings.Repeat("x", 1<<20)
	for i := range 2 {
		r, page := c.roundTrip("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n" + body)
		if r.StatusCode != 503 || string(page) != "offline" || r.Close {
			t.Fatalf("request %d: %d %q close=%v, want the offline page on a kept connection", i, r.StatusCode, page, r.Close)
		}
	}
	if i := h.obs.wait(t, 1); i.BytesIn != 1<<20 {
		t.Errorf("bytes in %d, want the dropped body counted", i.BytesIn)
	}

	// Past the bound the connection closes (the client, still sending,
	// may see the answer or a reset).
	big := dialRaw(t, h.addr)
	big.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 8388608\r\n\r\n" + strings.Repeat("x", 64<<10))
	_ = big.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, big.c); err != nil && isTimeout(err) {
		t.Errorf("connection with an 8 MiB body not drained was left open")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
