package fastpath

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// fakeApp is an App whose backends are real in-process servers.
type fakeApp struct {
	vpath    string
	spec     atomic.Pointer[configload.AppSpec]
	outcome  atomic.Uint32                  // supervisor.Outcome
	backends atomic.Pointer[[]*fakeBackend] // replaced whole, so requests in flight see a consistent list
	next     atomic.Uint64
	offline  []byte
	acquires atomic.Int64
}

func (a *fakeApp) Name() string                    { return a.vpath }
func (a *fakeApp) VirtualPath() string             { return a.vpath }
func (a *fakeApp) Spec() *configload.AppSpec       { return a.spec.Load() }
func (a *fakeApp) OfflinePage() []byte             { return a.offline }
func (a *fakeApp) setOutcome(o supervisor.Outcome) { a.outcome.Store(uint32(o)) }

func (a *fakeApp) Acquire(context.Context) (Backend, supervisor.Outcome) {
	a.acquires.Add(1)
	if o := supervisor.Outcome(a.outcome.Load()); o != supervisor.Ready {
		return nil, o
	}
	bs := *a.backends.Load()
	b := bs[(a.next.Add(1)-1)%uint64(len(bs))]
	b.acquired.Add(1)
	return b, supervisor.Ready
}

type fakeBackend struct {
	addr, token string
	pid         int
	up          *upstream
	acquired    atomic.Int64
	released    atomic.Int64 // Release and ReleaseUnused
	unused      atomic.Int64 // ReleaseUnused only
	unreachable atomic.Int64
	exit        atomic.Uint32 // supervisor.ExitCause AwaitExit reports
}

func (b *fakeBackend) Addr() string                  { return b.addr }
func (b *fakeBackend) Token() string                 { return b.token }
func (b *fakeBackend) PID() int                      { return b.pid }
func (b *fakeBackend) Upstream() supervisor.Upstream { return b.up }
func (b *fakeBackend) Release()                      { b.released.Add(1) }
func (b *fakeBackend) ReleaseUnused()                { b.released.Add(1); b.unused.Add(1) }
func (b *fakeBackend) Unreachable()                  { b.unreachable.Add(1) }
func (b *fakeBackend) AwaitExit(time.Duration) supervisor.ExitCause {
	return supervisor.ExitCause(b.exit.Load())
}

// setBackends replaces the app's backends.
func (a *fakeApp) setBackends(bs ...*fakeBackend) { a.backends.Store(&bs) }

// addBackend appends b to the app's backends.
func (a *fakeApp) addBackend(b *fakeBackend) { a.setBackends(append(a.list(), b)...) }

func (a *fakeApp) list() []*fakeBackend {
	if bs := a.backends.Load(); bs != nil {
		return *bs
	}
	return nil
}

func testSpec(vpath string) *configload.AppSpec {
	return &configload.AppSpec{
		VirtualPath:             vpath,
		RequestTimeout:          2 * time.Minute,
		MaxAllowedContentLength: 30000000,
		ConsoleRedirection:      true, // configload's default
		QueueLength:             1000, // configload's default
	}
}

// harness is a running front server with its apps.
type harness struct {
	t    *testing.T
	srv  *Server
	addr string
	apps map[string]*fakeApp
	obs  *recorder
	logs *logBuffer // the server's log, JSON lines
}

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newHarness starts a front server on 127.0.0.1 for apps mounted at vpaths,
// each with no backend yet (see backend).
func newHarness(t *testing.T, cfg Config, vpaths ...string) *harness {
	t.Helper()
	h := &harness{t: t, apps: map[string]*fakeApp{}, obs: &recorder{}, logs: &logBuffer{}}
	var apps []App
	for _, vp := range vpaths {
		a := &fakeApp{vpath: vp}
		a.spec.Store(testSpec(vp))
		h.apps[vp] = a
		apps = append(apps, a)
	}
	if cfg.Observer == nil {
		cfg.Observer = h.obs
	}
	srv, err := New(cfg, apps, zerolog.New(h.logs))
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(ln, false) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("ServeListener did not return after Shutdown")
		}
	})
	return h
}

// backend attaches a backend at addr to the app mounted at vpath.
func (h *harness) backend(vpath, addr string) *fakeBackend {
	n := len(h.apps[vpath].list())
	b := &fakeBackend{addr: addr, token: "tok-" + strconv.Itoa(n+1), pid: 4000 + n, up: newUpstream(addr, &h.srv.cfg)}
	h.t.Cleanup(b.up.Close)
	h.apps[vpath].addBackend(b)
	return b
}

func (h *harness) setSpec(vpath string, edit func(*configload.AppSpec)) {
	s := *h.apps[vpath].spec.Load()
	edit(&s)
	h.apps[vpath].spec.Store(&s)
}

func (h *harness) client() *http.Client {
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}
	h.t.Cleanup(c.CloseIdleConnections)
	return c
}

func (h *harness) url(path string) string { return "http://" + h.addr + path }

// recorder is an Observer that keeps what it saw.
type recorder struct {
	mu    sync.Mutex
	infos []RequestInfo
}

func (r *recorder) ObserveRequest(i RequestInfo) {
	i.RawMethod, i.Target, i.RemoteAddr = nil, nil, nil
	r.mu.Lock()
	r.infos = append(r.infos, i)
	r.mu.Unlock()
}

// last waits (bounded) for the n-th observation and returns it.
func (r *recorder) wait(t *testing.T, n int) RequestInfo {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		if len(r.infos) >= n {
			i := r.infos[n-1]
			r.mu.Unlock()
			return i
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("observer saw fewer than %d requests", n)
	return RequestInfo{}
}

// rawBackend serves each connection with serve, on 127.0.0.1.
func rawBackend(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("raw backend connections did not end")
		}
	})
	return ln.Addr().String()
}

// rawRequest is one request as a raw backend received it.
type rawRequest struct {
	head string // request line and header lines, CRLF-separated, without the blank line
	body []byte
}

func (r rawRequest) lines() []string { return strings.Split(r.head, "\r\n") }

// values returns the values of every header line called name (any case).
func (r rawRequest) values(name string) []string {
	var out []string
	for _, l := range r.lines()[1:] {
		if i := strings.IndexByte(l, ':'); i > 0 && strings.EqualFold(l[:i], name) {
			out = append(out, strings.TrimSpace(l[i+1:]))
		}
	}
	return out
}

// readRawRequest reads one request (head and body) off br.
func readRawRequest(br *bufio.Reader) (rawRequest, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return rawRequest{}, err
		}
		if line == "\r\n" {
			break
		}
		head.WriteString(line)
	}
	r := rawRequest{head: strings.TrimSuffix(head.String(), "\r\n")}
	if cl := r.values("Content-Length"); len(cl) == 1 {
		n, err := strconv.Atoi(cl[0])
		if err != nil {
			return r, err
		}
		r.body = make([]byte, n)
		if _, err := io.ReadFull(br, r.body); err != nil {
			return r, err
		}
	} else if te := r.values("Transfer-Encoding"); len(te) == 1 {
		b, err := io.ReadAll(httputil.NewChunkedReader(br))
		if err != nil {
			return r, err
		}
		// the chunked reader stops after the last chunk; eat the final CRLF
		if _, err := br.ReadString('\n'); err != nil {
			return r, err
		}
		r.body = b
	}
	return r, nil
}

// capturingBackend answers every request with response and sends what it
// received on the returned channel.
func capturingBackend(t *testing.T, response string) (string, chan rawRequest) {
	ch := make(chan rawRequest, 64)
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			r, err := readRawRequest(br)
			if err != nil {
				return
			}
			ch <- r
			if _, err := io.WriteString(c, response); err != nil {
				return
			}
		}
	})
	return addr, ch
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting")
	}
	var zero T
	return zero
}

// rawConn is a client connection that sends raw bytes and reads responses.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// response reads one response and its whole body.
func (r *rawConn) response(method string) (*http.Response, []byte) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading response body: %v", err)
	}
	return resp, body
}

func (r *rawConn) roundTrip(req string) (*http.Response, []byte) {
	r.t.Helper()
	r.send(req)
	method, _, _ := strings.Cut(req, " ")
	return r.response(method)
}

// closedByPeer reports whether the connection gets EOF (or a reset) within d.
func (r *rawConn) closedByPeer(d time.Duration) bool {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	_, err := r.br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func get(host, path string) string {
	return fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// refusedAddr returns a loopback address whose connects are refused for the
// rest of the test: the port stays bound (so no other test's listener can
// take it, as it could after a closed listener) but is never listened on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
}
