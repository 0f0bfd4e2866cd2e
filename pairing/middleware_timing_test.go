package pairing_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/pairing"
	"github.com/loopgate/loopgate/pairing/fastpairing"
)

// A request as loopgate sends it: token, client address and scheme.
func loopgateFastRequest(path string) *fasthttp.Request {
	req := new(fasthttp.Request)
	req.SetRequestURI(path)
	req.Header.SetHost("example.com")
	req.Header.Set("MS-ASPNETCORE-TOKEN", testToken)
	req.Header.Set("X-Forwarded-For", "203.0.113.7:5555")
	req.Header.Set("X-Forwarded-Proto", "https")
	return req
}

var loopbackPeer = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// serveFastCtx runs h on a fresh RequestCtx the way fasthttp.Server does,
// including the user-value cleanup that follows writing the response.
func serveFastCtx(ctx *fasthttp.RequestCtx, req *fasthttp.Request, h fasthttp.RequestHandler) {
	ctx.Init(req, loopbackPeer, nil)
	h(ctx)
	ctx.Request.Reset()
	ctx.Response.Reset()
}

func benchmarkFast(b *testing.B, cfg pairing.Config, path string) {
	h := fastpairing.Middleware(cfg, pairing.Options{})(func(ctx *fasthttp.RequestCtx) {})
	req := loopgateFastRequest(path)
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		serveFastCtx(&ctx, req, h)
	}
}

func benchmarkNetHTTP(b *testing.B, cfg pairing.Config, path string) {
	h := cfg.Middleware(pairing.Options{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("GET", "http://example.com"+path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("MS-ASPNETCORE-TOKEN", testToken)
		r.Header.Set("X-Forwarded-For", "203.0.113.7:5555")
		r.Header.Set("X-Forwarded-Proto", "https")
		h.ServeHTTP(w, r)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	mounted := hostedRoot
	mounted.ApplPath = "/app"
	b.Run("flavour=fasthttp/app=root", func(b *testing.B) { benchmarkFast(b, hostedRoot, "/x") })
	b.Run("flavour=fasthttp/app=mounted", func(b *testing.B) { benchmarkFast(b, mounted, "/app/x") })
	b.Run("flavour=fasthttp/app=none", func(b *testing.B) { benchmarkFast(b, pairing.Config{}, "/x") })
	b.Run("flavour=net-http/app=root", func(b *testing.B) { benchmarkNetHTTP(b, hostedRoot, "/x") })
	b.Run("flavour=net-http/app=mounted", func(b *testing.B) { benchmarkNetHTTP(b, mounted, "/app/x") })
	b.Run("flavour=net-http/app=none", func(b *testing.B) { benchmarkNetHTTP(b, pairing.Config{}, "/x") })
}

// TestFastMiddlewareAllocs: the fasthttp flavour allocates only for a
// forwarded client address (the address itself, and the string netip
// parses); the path base state is pooled.
func TestFastMiddlewareAllocs(t *testing.T) {
	mounted := hostedRoot
	mounted.ApplPath = "/app"
	plain := func(path string) *fasthttp.Request {
		req := loopgateFastRequest(path)
		req.Header.Del("X-Forwarded-For")
		req.Header.Del("X-Forwarded-Proto")
		return req
	}
	measure := func(cfg pairing.Config, req *fasthttp.Request) float64 {
		h := fastpairing.Middleware(cfg, pairing.Options{})(func(ctx *fasthttp.RequestCtx) {})
		var ctx fasthttp.RequestCtx
		serveFastCtx(&ctx, req, h) // warm the pools
		return testing.AllocsPerRun(200, func() { serveFastCtx(&ctx, req, h) })
	}
	base := measure(pairing.Config{}, plain("/x")) // RequestCtx.Init's own
	for _, tc := range []struct {
		name string
		cfg  pairing.Config
		req  *fasthttp.Request
		max  float64
	}{
		{"root, not forwarded", hostedRoot, plain("/x"), 0},
		{"mounted, not forwarded", mounted, plain("/app/x"), 0},
		{"root, forwarded", hostedRoot, loopgateFastRequest("/x"), 2},
		{"mounted, forwarded", mounted, loopgateFastRequest("/app/x"), 2},
	} {
		if got := measure(tc.cfg, tc.req) - base; got > tc.max {
			t.Errorf("%s: %.1f allocations per request, want at most %.0f", tc.name, got, tc.max)
		}
	}
}
