package fastpath

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
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
