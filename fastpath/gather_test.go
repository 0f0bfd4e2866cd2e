package fastpath

import (
	"bytes"
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// Responses whose head and body do not fit in the front server's 16 KiB
// write buffer go out with one writev (writeGathered): every byte must
// arrive in order, on a connection that stays usable, at sizes around the
// buffer's edge and well past it.
func TestResponsesAroundWriteBuffer(t *testing.T) {
	body := make([]byte, 200_000)
	for i := range body {
		body[i] = byte('a' + i%23)
	}
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		n, err := strconv.Atoi(string(ctx.QueryArgs().Peek("n")))
		if err != nil || n > len(body) {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		ctx.SetBody(body[:n])
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(ln)
	t.Cleanup(func() { _ = backend.Shutdown() })
	h := newHarness(t, Config{}, "/")
	h.backend("/", ln.Addr().String())

	c := dialRaw(t, h.addr)
	for _, n := range []int{0, 1, 16<<10 - 300, 16<<10 - 100, 16<<10 - 1, 16 << 10, 16<<10 + 1, 20_000, 40_000, 200_000} {
		resp, got := c.roundTrip(get("example.test", "/?n="+strconv.Itoa(n)))
		if resp.StatusCode != 200 || !bytes.Equal(got, body[:n]) {
			t.Fatalf("n=%d: status %d, %d body bytes, equal %v", n, resp.StatusCode, len(got), bytes.Equal(got, body[:n]))
		}
		if resp.Close {
			t.Fatalf("n=%d: connection not kept alive", n)
		}
	}
}
