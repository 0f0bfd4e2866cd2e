package fastpath

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// countingObserver is what a metrics observer costs at least: a few atomic
// adds per request.
type countingObserver struct{ n, bytes atomic.Int64 }

func (o *countingObserver) ObserveRequest(i RequestInfo) {
	o.n.Add(1)
	o.bytes.Add(i.BytesOut)
}

// benchRig is a fasthttp backend, loopgate in front of it, and one
// keep-alive client connection to each, all on loopback; frontTLS is a
// TLS 1.3 connection to loopgate's TLS listener.
type benchRig struct {
	direct, front, frontTLS *benchClient
	obs                     *countingObserver
}

type benchClient struct {
	c    net.Conn
	br   *bufio.Reader
	resp fasthttp.Response
}

func (c *benchClient) do(tb testing.TB, req []byte) {
	if _, err := c.c.Write(req); err != nil {
		tb.Fatal(err)
	}
	if err := c.resp.Read(c.br); err != nil {
		tb.Fatal(err)
	}
	if c.resp.StatusCode() != 200 || len(c.resp.Body()) != 64 {
		tb.Fatalf("status %d body %d", c.resp.StatusCode(), len(c.resp.Body()))
	}
}

func newBenchRig(tb testing.TB) *benchRig { return newBenchRigFields(tb) }

// newBenchRigFields is newBenchRig with a backend that adds fields (name,
// value, name, value...) to each response.
func newBenchRigFields(tb testing.TB, fields ...string) *benchRig {
	body := []byte(strings.Repeat("b", 64))
	backend := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if len(ctx.Request.Header.Peek("MS-ASPNETCORE-TOKEN")) == 0 {
				ctx.SetStatusCode(400)
				return
			}
			for i := 0; i+1 < len(fields); i += 2 {
				ctx.Response.Header.Add(fields[i], fields[i+1])
			}
			ctx.SetBody(body)
		},
	}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go backend.Serve(bln)
	tb.Cleanup(func() { _ = backend.Shutdown() })

	r := &benchRig{obs: &countingObserver{}}
	app := &fakeApp{vpath: "/"}
	app.spec.Store(testSpec("/"))
	dir := tb.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	certPEM, keyPEM, _ := newTestCA(tb, "bench CA").issue(tb, "loopgate", 1, false)
	if os.WriteFile(certFile, certPEM, 0o600) != nil || os.WriteFile(keyFile, keyPEM, 0o600) != nil {
		tb.Fatal("writing the certificate")
	}
	// TLSListen only makes New load the certificate: the listeners are the rig's.
	srv, err := New(Config{Observer: r.obs, TLSListen: []string{"127.0.0.1:0"}, TLSCertFile: certFile, TLSKeyFile: keyFile}, []App{app}, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	up := newUpstream(bln.Addr().String(), &srv.cfg)
	tb.Cleanup(up.Close)
	app.setBackends(&fakeBackend{addr: bln.Addr().String(), token: "0f8fad5b-d9cb-469f-a165-70867728950e", pid: 1, up: up})
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.ServeListener(fln, false)
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go srv.ServeListener(tln, true)
	tb.Cleanup(func() { _ = srv.Shutdown(tb.Context()) })

	dial := func(addr string) *benchClient {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		return &benchClient{c: c, br: bufio.NewReaderSize(c, 16<<10)}
	}
	r.direct = dial(bln.Addr().String())
	r.front = dial(fln.Addr().String())
	tc, err := tls.Dial("tcp", tln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"http/1.1"}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tc.Close() })
	r.frontTLS = &benchClient{c: tc, br: bufio.NewReaderSize(tc, 16<<10)}
	return r
}

var (
	benchGET = []byte("GET /api/items/42?expand=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench/1.0\r\n" +
		"Accept: application/json\r\nCookie: session=abc123\r\nX-Request-Id: 0123456789\r\n\r\n")
	benchPOST = []byte("POST /api/items HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: bench/1.0\r\n" +
		"Content-Type: application/json\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("p", 1024))
	// benchGETDots has dot segments: its target is normalized (requestline.go).
	benchGETDots = []byte(strings.Replace(string(benchGET), "/api/items/42", "/api/v1/../items/./%2e%2e/items/42", 1))
	// The direct requests carry the token the backend checks for.
	benchGETDirect  = []byte(strings.Replace(string(benchGET), "\r\n\r\n", "\r\nMS-ASPNETCORE-TOKEN: t\r\n\r\n", 1))
	benchPOSTDirect = []byte(strings.Replace(string(benchPOST), "\r\n\r\n", "\r\nMS-ASPNETCORE-TOKEN: t\r\n\r\n", 1))
)

// TestForwardAllocs gates the whole forward path (front server, routing,
// Acquire, header rewrite, pooled upstream, response relay, observer) at
// zero allocations per request, a target normalized for its dot segments
// included.
func TestForwardAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	r := newBenchRig(t)
	for _, tc := range []struct {
		name string
		req  []byte
	}{{"GET", benchGET}, {"POST 1 KiB", benchPOST}, {"GET with dot segments", benchGETDots}} {
		for i := 0; i < 100; i++ { // warm pools and buffers
			r.front.do(t, tc.req)
		}
		allocs := testing.AllocsPerRun(2000, func() { r.front.do(t, tc.req) })
		// AllocsPerRun counts every goroutine: client, loopgate and backend.
		// The direct run shows what client and backend cost alone.
		direct := testing.AllocsPerRun(2000, func() { r.direct.do(t, benchGETDirect) })
		if allocs != 0 || direct != 0 {
			t.Errorf("%s: %v allocs per request through loopgate (%v direct), want 0", tc.name, allocs, direct)
		}
	}
	if r.obs.n.Load() == 0 {
		t.Errorf("observer not called")
	}
}

// TestForwardAllocsHopFields: a response with hop-by-hop fields, as Node
// sends by default (Connection: keep-alive, Keep-Alive: timeout=5), is
// rebuilt without them (dropHopFields) at zero allocations too.
func TestForwardAllocsHopFields(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	r := newBenchRigFields(t, "X-Before", "1", "Connection", "keep-alive", "Keep-Alive", "timeout=5", "X-After", "2")
	for i := 0; i < 100; i++ { // warm pools and buffers
		r.front.do(t, benchGET)
	}
	if h := &r.front.resp.Header; h.Peek("Keep-Alive") != nil || string(h.Peek("X-Before")) != "1" || string(h.Peek("X-After")) != "2" {
		t.Fatalf("response head:\n%s", h.Header())
	}
	if allocs := testing.AllocsPerRun(2000, func() { r.front.do(t, benchGET) }); allocs != 0 {
		t.Errorf("%v allocs per request through loopgate, want 0", allocs)
	}
}

// TestForwardAllocsTLS gates the same path behind the TLS listener: a
// keep-alive GET over TLS 1.3 allocates only what crypto/tls allocates
// per record read (its atLeastReader escapes: one on the client's side,
// one on loopgate's), nothing of loopgate's.
func TestForwardAllocsTLS(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	r := newBenchRig(t)
	for i := 0; i < 100; i++ { // warm pools and buffers
		r.frontTLS.do(t, benchGET)
	}
	if allocs := testing.AllocsPerRun(2000, func() { r.frontTLS.do(t, benchGET) }); allocs > 2 {
		t.Errorf("%v allocs per TLS request through loopgate, client's included; want at most crypto/tls's 2", allocs)
	}
}

func BenchmarkForward(b *testing.B) {
	r := newBenchRig(b)
	for _, tc := range []struct {
		name   string
		client *benchClient
		req    []byte
	}{
		{"path=direct/method=GET", r.direct, benchGETDirect},
		{"path=loopgate/method=GET", r.front, benchGET},
		{"path=direct/method=POST1K", r.direct, benchPOSTDirect},
		{"path=loopgate/method=POST1K", r.front, benchPOST},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tc.client.do(b, tc.req)
			}
		})
	}
}

// BenchmarkForwardTLS is BenchmarkForward's GET through loopgate's TLS
// listener. It is apart because it allocates: crypto/tls does, on both
// sides (TestForwardAllocsTLS bounds it), and make bench-guard fails on
// any allocation in BenchmarkForward.
func BenchmarkForwardTLS(b *testing.B) {
	r := newBenchRig(b)
	b.ReportAllocs()
	for b.Loop() {
		r.frontTLS.do(b, benchGET)
	}
}

// BenchmarkHeaderRewrite measures the request head rewrite alone.
func BenchmarkHeaderRewrite(b *testing.B) {
	var req fasthttp.Request
	req.Header.DisableNormalizing()
	if err := req.Header.Read(bufio.NewReader(strings.NewReader(string(benchGET)))); err != nil {
		b.Fatal(err)
	}
	in := headInput{token: "0f8fad5b-d9cb-469f-a165-70867728950e", remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, contentLength: -2}
	dst := make([]byte, 0, 1024)
	var ri reqInfo // reused, as an exchange's is
	b.ReportAllocs()
	for b.Loop() {
		if err := scanRequestHeaders(req.Header.RawHeaders(), &ri); err != nil {
			b.Fatal(err)
		}
		dst = appendRequestHead(dst[:0], &req.Header, &ri, &in)
	}
}
