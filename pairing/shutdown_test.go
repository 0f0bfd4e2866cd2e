package pairing_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/loopgate/loopgate/pairing"
	"github.com/loopgate/loopgate/pairing/fastpairing"
)

// trackingListener remembers accepted connections so a test's Stop can
// cut them all, the harshest thing a stop function can do.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) cutAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// startServer serves the middleware-wrapped app of one flavour on
// 127.0.0.1:0 and returns its address.
func startServer(t *testing.T, fast bool, cfg pairing.Config, opts func(*trackingListener) pairing.Options) string {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &trackingListener{Listener: inner}
	o := opts(ln)
	done := make(chan struct{})
	var stopServer func()
	if fast {
		s := &fasthttp.Server{Handler: fastpairing.Middleware(cfg, o)(func(ctx *fasthttp.RequestCtx) { ctx.WriteString("app") })}
		go func() { s.Serve(ln); close(done) }()
		stopServer = func() { s.Shutdown() }
	} else {
		s := &http.Server{Handler: cfg.Middleware(o)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "app") }))}
		go func() { s.Serve(ln); close(done) }()
		stopServer = func() { s.Close() }
	}
	t.Cleanup(func() {
		stopServer()
		ln.Close()
		ln.cutAll()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
	})
	return inner.Addr().String()
}

// sendShutdown sends the request loopgate sends and returns the answer,
// body read to the end.
func sendShutdown(t *testing.T, addr string, closeConn bool) (int, string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "POST /iisintegration HTTP/1.1\r\nHost: 127.0.0.1\r\nMS-ASPNETCORE-EVENT:shutdown \r\nMS-ASPNETCORE-TOKEN: " + testToken + "\r\nContent-Length: 0\r\n"
	if closeConn {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestShutdownAnsweredBeforeStop: Stop cuts every connection at once, yet
// the 202 must arrive whole, because Stop runs only after it is written.
// Stop runs once however many shutdown requests come.
func TestShutdownAnsweredBeforeStop(t *testing.T) {
	for _, fast := range []bool{false, true} {
		for _, closeConn := range []bool{false, true} {
			name := map[bool]string{false: "net/http", true: "fasthttp"}[fast] + map[bool]string{false: "/keep-alive", true: "/connection-close"}[closeConn]
			t.Run(name, func(t *testing.T) {
				var calls atomic.Int32
				stopped := make(chan struct{}, 4)
				addr := startServer(t, fast, hostedRoot, func(ln *trackingListener) pairing.Options {
					return pairing.Options{Stop: func() { ln.cutAll(); calls.Add(1); stopped <- struct{}{} }}
				})
				for i := range 3 {
					status, body, err := sendShutdown(t, addr, closeConn)
					if err != nil || status != http.StatusAccepted || body != "" {
						t.Fatalf("shutdown request %d: status %d body %q err %v; want 202, empty body", i, status, body, err)
					}
					if i == 0 {
						select {
						case <-stopped:
						case <-time.After(5 * time.Second):
							t.Fatal("Stop not called")
						}
					}
				}
				time.Sleep(20 * time.Millisecond)
				if n := calls.Load(); n != 1 {
					t.Errorf("Stop called %d times, want once", n)
				}
			})
		}
	}
}

// TestShutdownNilStopSignalsSelf: without a Stop function the process gets
// SIGTERM (caught here, so the test binary survives).
func TestShutdownNilStopSignalsSelf(t *testing.T) {
	for _, fast := range []bool{false, true} {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		addr := startServer(t, fast, hostedRoot, func(*trackingListener) pairing.Options { return pairing.Options{} })
		status, _, err := sendShutdown(t, addr, false)
		if err != nil || status != http.StatusAccepted {
			t.Fatalf("fast=%v: status %d err %v, want 202", fast, status, err)
		}
		select {
		case <-sig:
		case <-time.After(5 * time.Second):
			t.Errorf("fast=%v: no SIGTERM after the shutdown request with a nil Stop", fast)
		}
		signal.Stop(sig)
	}
}

// TestShutdownNotHosted: without the contract the request is the app's.
func TestShutdownNotHosted(t *testing.T) {
	for _, fast := range []bool{false, true} {
		addr := startServer(t, fast, pairing.Config{}, func(*trackingListener) pairing.Options {
			return pairing.Options{Stop: func() { t.Error("Stop called while not hosted") }}
		})
		status, body, err := sendShutdown(t, addr, false)
		if err != nil || status != 200 || body != "app" {
			t.Errorf("fast=%v: status %d body %q err %v; want the app's 200", fast, status, body, err)
		}
	}
}
