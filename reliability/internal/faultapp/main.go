// Command faultapp is the backend the reliability tests and the soak host
// behind loopgate: a net/http app behind the pairing middleware (as a Go app
// would be hosted) whose misbehaviour is chosen per request or through the
// environment.
//
//	GET  /                  "pid=N\n"
//	GET  /headers           JSON {"raw": {...}, "app": {...}, "token_lines": n,
//	                        "token_ok": bool}: the header block as it arrived
//	                        from loopgate (MS-ASPNETCORE-TOKEN values left out)
//	                        and as the app sees it after the middleware
//	GET  /hang              never answers (until loopgate gives up on it)
//	GET  /sleep?ms=N        answers "slept" after N ms
//	GET  /big?mb=N          N MiB of body (Content-Length), for slow readers
//	GET  /stream?chunks=N   N lines, each flushed, 5 ms apart (chunked)
//	POST /upload            reads the body and answers "n=<bytes> sum=<sum of
//	                        the bytes mod 2^32>"
//	POST /echo              answers with the request body (read whole first)
//	GET  /ws                WebSocket echo
//	GET  /orphan            starts a shell that leaves a short sleep behind it
//	                        (an orphan, re-parented to PID 1) and exits
//
// It stops gracefully (in-flight requests and WebSocket sessions finish, at
// most 10 s) on loopgate's shutdown request, SIGTERM or SIGINT.
//
// Environment:
//
//	FA_BACKLOG=n            listen(2) backlog (default: the kernel's somaxconn);
//	                        a small one makes a stopped process refuse new
//	                        connections once n are queued
//	FA_PRINT_LINES=n        print n lines to stdout at start, then one line
//	                        per request to /
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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

	"golang.org/x/net/websocket"

	"github.com/loopgate/loopgate/pairing"
)

func main() {
	cfg, hosted := pairing.FromEnv()
	if !hosted {
		fmt.Fprintln(os.Stderr, "faultapp: not hosted (ASPNETCORE_PORT, ASPNETCORE_APPL_PATH, ASPNETCORE_TOKEN unset)")
		os.Exit(2)
	}
	ln, err := listen(pairing.ListenAddr(""), os.Getenv("FA_BACKLOG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultapp:", err)
		os.Exit(1)
	}
	printLines, _ := strconv.Atoi(os.Getenv("FA_PRINT_LINES"))
	for i := range printLines {
		fmt.Printf("start line %d of %d from pid %d\n", i+1, printLines, os.Getpid())
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if printLines > 0 {
			fmt.Printf("request from %s\n", r.RemoteAddr)
		}
		fmt.Fprintf(w, "pid=%d\n", os.Getpid())
	})
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // loopgate gave up and closed the connection
	})
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > 600000 {
			http.Error(w, "ms: want 0..600000", http.StatusBadRequest)
			return
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprint(w, "slept")
	})
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb < 1 || mb > 4096 {
			http.Error(w, "mb: want 1..4096", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(mb<<20))
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i)
		}
		for range mb {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("chunks"))
		if err != nil || n < 1 || n > 100000 {
			http.Error(w, "chunks: want 1..100000", http.StatusBadRequest)
			return
		}
		rc := http.NewResponseController(w)
		for i := range n {
			if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		var sum uint32
		buf := make([]byte, 32<<10)
		for {
			k, err := r.Body.Read(buf)
			for _, b := range buf[:k] {
				sum += uint32(b)
			}
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		fmt.Fprintf(w, "n=%d sum=%d", n, sum)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// Read whole before answering: net/http may close an HTTP/1.1
		// request body once the response headers are out.
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /orphan", func(w http.ResponseWriter, r *http.Request) {
		if err := exec.Command("/bin/sh", "-c", "sleep 0.2 & exit 0").Run(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "orphaned")
	})
	// WebSocket sessions are hijacked, so Shutdown does not wait for them;
	// the graceful stop does.
	var sessions sync.WaitGroup
	mux.Handle("GET /ws", websocket.Handler(func(c *websocket.Conn) {
		sessions.Add(1)
		defer sessions.Done()
		_, _ = io.Copy(c, c)
	}))

	stop := make(chan struct{})
	var once sync.Once
	app := cfg.Middleware(pairing.Options{Stop: func() { once.Do(func() { close(stop) }) }})(mux)
	srv := &http.Server{Handler: headersFirst(cfg, app), ReadHeaderTimeout: 10 * time.Second}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	fmt.Printf("listening on %s pid %d\n", ln.Addr(), os.Getpid())
	go func() { served <- srv.Serve(ln) }()
	select {
	case <-stop:
	case <-sigc:
	case err := <-served:
		fmt.Fprintln(os.Stderr, "faultapp:", err)
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
		return nil, fmt.Errorf("FA_BACKLOG=%q: want a non-negative integer", backlog)
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
