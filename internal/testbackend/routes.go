// The requests the test backend answers behind the pairing middleware
// (routes), as the package comment lists them, and the state they keep:
// what /alloc holds and when the listener was bound.

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/websocket"
)

// allocated is what /alloc keeps alive.
var (
	allocMu   sync.Mutex
	allocated [][]byte
)

// listenedAt is when the listener was bound (unix ns), for GET /listened.
var listenedAt atomic.Int64

// routes is the app behind the middleware. WebSocket sessions are
// hijacked, so Shutdown does not wait for them; sessions counts them for the
// graceful stop.
func routes(port string, logRequests bool, sessions *sync.WaitGroup) *http.ServeMux {
	mux := http.NewServeMux()
	pid := func(w http.ResponseWriter, r *http.Request) {
		if logRequests {
			fmt.Printf("request from %s\n", r.RemoteAddr)
		}
		fmt.Fprintf(w, "pid=%d\n", os.Getpid())
	}
	mux.HandleFunc("GET /{$}", pid)
	mux.HandleFunc("GET /pid", pid)
	mux.HandleFunc("GET /listened", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", listenedAt.Load())
	})
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "ASPNETCORE_") || strings.HasPrefix(k, "TB_") {
				env[k] = v
			}
		}
		wd, _ := os.Getwd()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"pid": os.Getpid(), "port": port, "token": os.Getenv("ASPNETCORE_TOKEN"),
			"args": os.Args[1:], "wd": wd, "env": env,
		})
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("GET /exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		os.Exit(code)
	})
	mux.HandleFunc("GET /alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
		if err != nil || mb < 1 || mb > 65536 {
			http.Error(w, "mb: want 1..65536", http.StatusBadRequest)
			return
		}
		for range mb {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // touched: resident, charged to the cgroup
			}
			allocMu.Lock()
			allocated = append(allocated, b)
			allocMu.Unlock()
		}
		fmt.Fprintf(w, "allocated %d MiB\n", mb)
	})
	mux.HandleFunc("GET /hang", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // loopgate gave up and closed the connection
	})
	mux.HandleFunc("GET /sleep", func(w http.ResponseWriter, r *http.Request) {
		if sleep(w, r) {
			fmt.Fprint(w, "slept")
		}
	})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		if sleep(w, r) {
			fmt.Fprintf(w, "slow done pid=%d\n", os.Getpid())
		}
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
		if r.URL.Query().Has("ms") && !sleep(w, r) {
			return
		}
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
	mux.Handle("GET /ws", websocket.Handler(func(c *websocket.Conn) {
		sessions.Add(1)
		defer sessions.Done()
		_, _ = io.Copy(c, c)
	}))
	return mux
}

// sleep waits ?ms=N milliseconds; false (and a 400 sent) for a bad N.
func sleep(w http.ResponseWriter, r *http.Request) bool {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 || ms > 600000 {
		http.Error(w, "ms: want 0..600000", http.StatusBadRequest)
		return false
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return true
}
