// Command hello is the example backend: a small net/http app that loopgate
// hosts the way the ASP.NET Core Module hosts a published app (its
// web.config is next to this file), and that shows the request as the app
// sees it behind loopgate. It also runs on its own.
//
// It listens on 127.0.0.1:$ASPNETCORE_PORT when hosted (see
// pairing.ListenAddr), otherwise on 127.0.0.1:5000, and prints one line
// "listening on ..." to stdout when it is ready. It stops gracefully
// (http.Server.Shutdown, at most 10 s) on loopgate's shutdown request, on
// SIGTERM and on SIGINT.
//
// Endpoints (paths are below the app's virtual path when it is mounted at
// one; the end-to-end and forwarding tests rely on them):
//
//	GET  /                     HTML page: client address, scheme, path base, path,
//	                           Host, X-Forwarded-For, X-Original-For/-Proto, PID,
//	                           uptime, hosted or not. Any path not listed here
//	                           shows the same page.
//	GET  /info                 the same facts as JSON: pid, hosted, appl_path, remote,
//	                           scheme, path_base, path, host, x_forwarded_for,
//	                           x_original_for, x_original_proto, uptime_ms
//	GET  /healthz              200 "ok"
//	GET  /slow?ms=N            waits N ms (0..600000), then 200 "slept N ms"
//	GET  /stream?chunks=N&ms=M N lines "chunk i" (N 1..100000), each flushed at
//	                           once, M ms apart (0..60000); chunked encoding
//	POST /echo                 (any method) answers the request body unchanged,
//	                           with its Content-Type and X-Echo-Length: the byte
//	                           count; bodies over 64 MiB get 413
//	GET  /headers              JSON object of the request headers as the app sees
//	                           them, {"Name": ["value", ...]}, Host included
//
// Bad query parameters get 400 with a message saying which and why.
package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/pairing"
)

// shutdownGrace bounds the graceful stop; loopgate's shutdownTimeLimit
// defaults to 10 s as well.
const shutdownGrace = 10 * time.Second

func main() {
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stdout, NoColor: true, TimeFormat: time.RFC3339}).
		With().Timestamp().Logger()
	cfg, hosted := pairing.FromEnv()
	addr := pairing.ListenAddr("127.0.0.1:5000")

	stopRequested := make(chan struct{})
	a := &app{start: time.Now(), cfg: cfg, hosted: hosted}
	srv := &http.Server{
		Handler: cfg.Middleware(pairing.Options{
			Stop: func() { close(stopRequested) }, // called at most once
			Log:  log,
		})(a.routes()),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error().Err(err).Msg("cannot listen")
		os.Exit(1)
	}
	if hosted {
		log.Info().Msgf("listening on http://%s (hosted: appl_path %s, pid %d)", ln.Addr(), cfg.ApplPath, os.Getpid())
	} else {
		log.Info().Msgf("listening on http://%s (not hosted, pid %d)", ln.Addr(), os.Getpid())
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case <-stopRequested:
		log.Info().Msg("stopping: shutdown request from the host")
	case s := <-signals:
		log.Info().Msgf("stopping: %v", s)
	case err := <-served:
		log.Error().Err(err).Msg("server failed")
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("requests still running after the grace period; closing them")
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		log.Error().Err(err).Msg("server failed")
		os.Exit(1)
	}
	log.Info().Msg("stopped")
}
