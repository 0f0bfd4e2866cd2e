// Command testbackend is the one scripted backend that the supervisor's
// real-process tests, cmd/loopgate's process tests, the reliability tests
// and the soak run start behind loopgate: a net/http app behind the pairing
// middleware, as a Go app is hosted, whose behaviour is chosen per request
// or, for what happens before a request can arrive, through the
// environment. It speaks the hosting contract with the standard library
// and pairing only, so no test depends on the example app.
//
// Every request passes the pairing middleware: without the right
// MS-ASPNETCORE-TOKEN it gets 400, the path base is stripped, and
// loopgate's shutdown request (POST {APPL_PATH}/iisintegration) is answered
// 202 and stops the app gracefully.
//
//	GET  /                  "pid=N\n"
//	GET  /pid               "pid=N\n"
//	GET  /info              JSON {"pid", "port", "token", "args", "wd", "env"}:
//	                        the ASPNETCORE_* and TB_* environment as started
//	GET  /env?name=X        the value of environment variable X
//	GET  /exit?code=N       exits at once with status N
//	GET  /headers           JSON {"raw": {...}, "app": {...}, "token_lines": n,
//	                        "token_ok": bool}: the header block as it arrived
//	                        from loopgate (MS-ASPNETCORE-TOKEN values left out)
//	                        and as the app sees it after the middleware
//	GET  /alloc?mb=N        allocates N MiB, touches every page and keeps it
//	                        (for memory limits), answers "allocated N MiB"
//	GET  /hang              never answers (until loopgate gives up on it)
//	GET  /sleep?ms=N        answers "slept" after N ms
//	GET  /slow?ms=N         answers "slow done pid=N\n" after N ms
//	GET  /big?mb=N          N MiB of body (Content-Length), for slow readers
//	GET  /stream?chunks=N   N lines, each flushed, 5 ms apart (chunked)
//	POST /upload[?ms=N]     reads the body (after N ms: a reader that falls
//	                        behind) and answers "n=<bytes> sum=<sum of the
//	                        bytes mod 2^32>"
//	POST /echo              answers with the request body (read whole first)
//	GET  /ws                WebSocket echo
//	GET  /listened          when the listener was bound, unix nanoseconds
//	GET  /orphan            starts a shell that leaves a short sleep behind it
//	                        (an orphan, re-parented to PID 1) and exits
//
// It stops gracefully (in-flight requests and WebSocket sessions finish, at
// most 10 s) on loopgate's shutdown request, SIGTERM or SIGINT, and prints
// "stopped pid N".
//
// Environment and flags:
//
//	TB_PRINT=text       print "out: text" to stdout and "err: text" to stderr at start
//	TB_PRINT_LINES=n    print n lines to stdout at start, then one line per
//	                    request to /
//	TB_LISTEN_DELAY=d   wait d before listening
//	TB_NO_LISTEN=1      never listen
//	TB_EXIT_AFTER=d     exit after d (TB_EXIT_CODE, default 3)
//	TB_IGNORE_TERM=1    ignore SIGTERM
//	TB_SHUTDOWN=ignore  answer the shutdown request with 404 instead of 202 and stopping
//	TB_CHILD=1          start a child process (in the same process group) that
//	                    sleeps, and print "child-pid N"
//	TB_BACKLOG=n        listen(2) backlog (default: the kernel's somaxconn); a
//	                    small one makes a stopped process refuse new
//	                    connections once n are queued
//	-port N             listen on N instead of $ASPNETCORE_PORT
//
// The benchmarks keep their own backend (bench/internal/backend): it must
// cost what a fasthttp app costs, the same under loopgate, nginx and
// HAProxy, which this one, built for behaviour, does not.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loopgate/loopgate/pairing"
)

func main() {
	if os.Getenv("TB_ROLE") == "child" {
		time.Sleep(time.Hour)
		return
	}
	cfg, hosted := pairing.FromEnv()
	if !hosted {
		fmt.Fprintln(os.Stderr, "testbackend: not hosted (ASPNETCORE_PORT, ASPNETCORE_APPL_PATH, ASPNETCORE_TOKEN unset)")
		os.Exit(2)
	}
	port := flag.String("port", cfg.Port, "port to listen on")
	flag.Parse()
	if t := os.Getenv("TB_PRINT"); t != "" {
		fmt.Fprintln(os.Stdout, "out: "+t)
		fmt.Fprintln(os.Stderr, "err: "+t)
	}
	printLines, _ := strconv.Atoi(os.Getenv("TB_PRINT_LINES"))
	for i := range printLines {
		fmt.Printf("start line %d of %d from pid %d\n", i+1, printLines, os.Getpid())
	}
	sigc := make(chan os.Signal, 1)
	if os.Getenv("TB_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
		signal.Notify(sigc, syscall.SIGINT)
	} else {
		signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	}
	if os.Getenv("TB_CHILD") == "1" {
		startChild()
	}
	if d := dur("TB_EXIT_AFTER"); d > 0 {
		code := 3
		if c, err := strconv.Atoi(os.Getenv("TB_EXIT_CODE")); err == nil {
			code = c
		}
		time.AfterFunc(d, func() { os.Exit(code) })
	}
	if os.Getenv("TB_NO_LISTEN") == "1" {
		// Not select{}: without cgo's threads the runtime would call a bare
		// select a deadlock and exit, which is not "never listens".
		for {
			time.Sleep(time.Hour)
		}
	}
	time.Sleep(dur("TB_LISTEN_DELAY"))
	ln, err := listen(net.JoinHostPort("127.0.0.1", *port), os.Getenv("TB_BACKLOG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbackend:", err)
		os.Exit(2)
	}
	listenedAt.Store(time.Now().UnixNano())

	var sessions sync.WaitGroup
	mux := routes(*port, printLines > 0, &sessions)
	stop := make(chan struct{})
	var once sync.Once
	app := cfg.Middleware(pairing.Options{Stop: func() { once.Do(func() { close(stop) }) }})(mux)
	srv := &http.Server{Handler: ignoreShutdown(headersFirst(cfg, app)), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	fmt.Printf("listening on %s pid %d\n", ln.Addr(), os.Getpid())
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-stop:
	case <-sigc:
	case err := <-served:
		fmt.Fprintln(os.Stderr, "testbackend:", err)
		os.Exit(1)
	}
	// The graceful stop of a hosted app: finish what is in flight (up to
	// 10 s, loopgate's default shutdownTimeLimit), then exit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	done := make(chan struct{})
	go func() { sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	fmt.Printf("stopped pid %d\n", os.Getpid())
}

// startChild starts this program again as a child that only sleeps, in the
// same process group, and prints its pid.
func startChild() {
	self, _ := os.Executable()
	c := exec.Command(self)
	c.Env = append(os.Environ(), "TB_ROLE=child")
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Printf("child-pid %d\n", c.Process.Pid)
}

// ignoreShutdown answers loopgate's shutdown request with 404 when
// TB_SHUTDOWN=ignore, before the middleware would honour it.
func ignoreShutdown(next http.Handler) http.Handler {
	if os.Getenv("TB_SHUTDOWN") != "ignore" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/iisintegration") &&
			strings.EqualFold(r.Header.Get("MS-ASPNETCORE-EVENT"), "shutdown") {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headersFirst answers /headers itself, with the header block as loopgate
// sent it and as the app sees it after the middleware; every other request
// goes to app (the middleware and the routes).
func headersFirst(cfg pairing.Config, app http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/headers") {
			app.ServeHTTP(w, r)
			return
		}
		raw := r.Header.Clone()
		tokens := raw.Values("MS-ASPNETCORE-TOKEN")
		delete(raw, "Ms-Aspnetcore-Token")
		var seen http.Header
		check := cfg.Middleware(pairing.Options{})(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			seen = r.Header.Clone()
		}))
		rec := &statusOnly{code: http.StatusOK}
		check.ServeHTTP(rec, r)
		if rec.code != http.StatusOK {
			w.WriteHeader(rec.code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"raw":         raw,
			"app":         seen,
			"token_lines": len(tokens),
			"token_ok":    len(tokens) == 1 && tokens[0] == cfg.Token,
			"remote":      r.RemoteAddr,
		})
	})
}

// statusOnly records the status the middleware answered with, if any.
type statusOnly struct{ code int }

func (s *statusOnly) Header() http.Header         { return http.Header{} }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.code = code }

// listen opens a TCP listener on addr with the given listen(2) backlog ("":
// Go's default, the kernel's somaxconn).
func listen(addr, backlog string) (net.Listener, error) {
	if backlog == "" {
		return net.Listen("tcp4", addr)
	}
	n, err := strconv.Atoi(backlog)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("TB_BACKLOG=%q: want a non-negative integer", backlog)
	}
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	sa := &syscall.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := syscall.Listen(fd, n); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	defer f.Close()
	return net.FileListener(f)
}

// dur reads a duration from the environment variable name (0 if unset or
// malformed).
func dur(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}
