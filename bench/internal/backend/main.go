// Command backend is the benchmarks' app: a fasthttp server that answers
// every GET with a fixed body, hosted by loopgate through a generated
// web.config or started directly by the benchmark (bench package) and the
// comparison harness (bench/cmd/compare).
//
// It listens on 127.0.0.1:$ASPNETCORE_PORT and serves
//
//	GET /       "Hello, World!" (13 bytes, text/plain)
//	GET /ws     101, then every byte echoed (an idle-tunnel stand-in)
//	GET /16k    16 KiB of 'x' (16384 bytes, text/plain)
//	GET /1m     1 MiB of 'x'
//	GET /64m    64 MiB of 'x'
//	POST /upload  the body read and dropped; answers its length in bytes
//	GET /listened  when the listener was bound, Unix nanoseconds (cold start)
//
// Any other path gets 404. With -pairing=on (the default) requests pass
// through pairing/fastpairing, as a real Go app behind loopgate does: the
// MS-ASPNETCORE-TOKEN header must carry $ASPNETCORE_TOKEN (else 400) and
// X-Forwarded-For is applied. With -pairing=off nothing is checked, so
// nginx and HAProxy, which know no token, see the same cost per request as
// loopgate does. It stops on SIGTERM, SIGINT and, with pairing on, on
// loopgate's shutdown request.
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/pairing"
	"github.com/loopgate/loopgate/pairing/fastpairing"
)

var (
	hello   = []byte("Hello, World!")
	big     = bytes.Repeat([]byte("x"), 16<<10)
	pathBig = []byte("/16k")
	textCT  = []byte("text/plain")
	// The large bodies are sent as they are (SetBodyRaw, no copy), so the
	// backend's cost per byte is the socket's; made at their first request,
	// so that they cost neither memory nor start-up time before.
	huge      = sync.OnceValue(func() []byte { return bytes.Repeat([]byte("x"), 64<<20) })
	pathLarge = []byte("/1m")
	pathHuge  = []byte("/64m")
	// listened is when the listener was bound, as GET /listened answers it.
	listened []byte
)

func handle(ctx *fasthttp.RequestCtx) {
	switch p := ctx.Path(); {
	case len(p) == 1 && p[0] == '/':
		ctx.SetContentTypeBytes(textCT)
		ctx.SetBody(hello)
	case bytes.Equal(p, pathBig):
		ctx.SetContentTypeBytes(textCT)
		ctx.SetBody(big)
	case bytes.Equal(p, pathLarge):
		ctx.SetContentTypeBytes(textCT)
		ctx.Response.SetBodyRaw(huge()[:1<<20])
	case bytes.Equal(p, pathHuge):
		ctx.SetContentTypeBytes(textCT)
		ctx.Response.SetBodyRaw(huge())
	case string(p) == "/upload" && ctx.IsPost():
		n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		ctx.SetContentTypeBytes(textCT)
		ctx.SetBodyString(strconv.FormatInt(n, 10))
	case string(p) == "/listened":
		ctx.SetBody(listened)
	case bytes.Equal(p, pathWS):
		// A WebSocket-shaped tunnel for the idle-tunnel measurement: 101,
		// then every byte echoed (frames are not parsed).
		ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
		ctx.Response.Header.Set("Upgrade", "websocket")
		ctx.Response.Header.Set("Connection", "Upgrade")
		// RFC 6455's accept (HAProxy checks it): base64(SHA-1(key + GUID)).
		sum := sha1.Sum(append(ctx.Request.Header.Peek("Sec-WebSocket-Key"), "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
		ctx.Response.Header.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
		ctx.Hijack(func(c net.Conn) { _, _ = io.Copy(c, c) })
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}
}

var pathWS = []byte("/ws")

func main() {
	mode := flag.String("pairing", "on", "on: check the pairing token with fastpairing; off: check nothing")
	flag.Parse()
	if err := run(*mode); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func run(mode string) error {
	cfg, _ := pairing.FromEnv()
	if cfg.Port == "" {
		return errors.New("ASPNETCORE_PORT is not set")
	}
	stop := make(chan struct{}, 1)
	var h fasthttp.RequestHandler = handle
	switch mode {
	case "on":
		h = fastpairing.Middleware(cfg, pairing.Options{Stop: func() { stop <- struct{}{} }})(handle)
	case "off":
	default:
		return fmt.Errorf("-pairing=%q: want on or off", mode)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", cfg.Port))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	listened = strconv.AppendInt(nil, time.Now().UnixNano(), 10)
	// Uploads are streamed (POST /upload reads the body as it arrives).
	srv := &fasthttp.Server{Handler: h, StreamRequestBody: true, MaxRequestBodySize: 1 << 30}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening on %s (pairing %s, pid %d)\n", ln.Addr(), mode, os.Getpid())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-signals:
	case <-stop:
	case err := <-served:
		return fmt.Errorf("serving: %w", err)
	}
	return srv.Shutdown()
}
