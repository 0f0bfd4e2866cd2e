package reliability

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// zdtLoad is the load of the zero-downtime tests (issue 16): conns client
// loops of GET path, each on its own keep-alive connection that it closes
// and dials again every reconnectEvery requests, so that connects (the
// thing a closed listener refuses) happen all the time, not only at the
// start. Stop it with stop; it counts every request.
type zdtLoad struct {
	ok, failed, refused atomic.Int64
	mu                  sync.Mutex
	errs                map[string]int
	bodies              map[string]int // first line of successful bodies, for the report
	stopc               chan struct{}
	wg                  sync.WaitGroup
}

const reconnectEvery = 8

// startZDTLoad starts conns loops of GET url that accept a 200 whose body
// satisfies okBody.
func startZDTLoad(t *testing.T, conns int, url string, okBody func(string) bool) *zdtLoad {
	t.Helper()
	z := &zdtLoad{errs: map[string]int{}, bodies: map[string]int{}, stopc: make(chan struct{})}
	for range conns {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
		c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
		z.wg.Add(1)
		go func() {
			defer z.wg.Done()
			defer tr.CloseIdleConnections()
			for n := 1; ; n++ {
				select {
				case <-z.stopc:
					return
				default:
				}
				code, body, err := get(c, url)
				switch {
				case err != nil:
					z.fail(errKind(err))
					if errors.Is(err, syscall.ECONNREFUSED) {
						z.refused.Add(1)
					}
				case code != 200 || !okBody(body):
					z.fail(fmt.Sprintf("status %d %.60q", code, body))
				default:
					z.ok.Add(1)
					line, _, _ := strings.Cut(body, "\n")
					z.mu.Lock()
					z.bodies[line]++
					z.mu.Unlock()
				}
				if n%reconnectEvery == 0 {
					tr.CloseIdleConnections()
				}
			}
		}()
	}
	return z
}

func (z *zdtLoad) fail(kind string) {
	z.failed.Add(1)
	z.mu.Lock()
	z.errs[kind]++
	z.mu.Unlock()
}

// stop ends the loops (each finishes the request it is in) within 20 s.
func (z *zdtLoad) stop(t *testing.T) {
	t.Helper()
	close(z.stopc)
	done := make(chan struct{})
	go func() { z.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("client loops did not stop within 20 s")
	}
}

func (z *zdtLoad) String() string {
	z.mu.Lock()
	defer z.mu.Unlock()
	var kinds []string
	for k, n := range z.errs {
		kinds = append(kinds, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d ok, %d failed, %d refused connections %v", z.ok.Load(), z.failed.Load(), z.refused.Load(), kinds)
}

// check fails t unless the load saw no failure, no refused connection and
// at least min successes.
func (z *zdtLoad) check(t *testing.T, min int64) {
	t.Helper()
	if z.failed.Load() != 0 || z.refused.Load() != 0 {
		t.Errorf("want 0 failed requests and 0 refused connections: %v", z)
	}
	if z.ok.Load() < min {
		t.Errorf("only %d requests succeeded (want at least %d): the load did not run", z.ok.Load(), min)
	}
}

// probe GETs an admin path and returns its status code and body.
func probe(t *testing.T, l *loopgatetest.Process, path string) (int, string) {
	t.Helper()
	code, body, err := get(client(t, 5*time.Second), "http://"+l.Admin+path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

// TestShutdownDelayUnderLoad: with --shutdown-delay, SIGTERM turns /readyz
// and /healthz red at once while /livez stays green, and 32 connections of
// load that keep connecting through the delay see no failed request and no
// refused connection; then loopgate drains and exits 0.
func TestShutdownDelayUnderLoad(t *testing.T) {
	const delay = 3 * time.Second
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--shutdown-delay", delay.String(),
		"--drain-timeout", "5s", appDir(t, `processesPerApplication="2"`, nil)}})
	if code, body, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %q %v", code, body, err)
	}
	pids := l.WaitReady(t, 2, 10*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	if code, body := probe(t, l, "/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz before SIGTERM: %d %q", code, body)
	}

	z := startZDTLoad(t, 32, l.URL("/"), func(b string) bool { return strings.HasPrefix(b, "pid=") })
	time.Sleep(500 * time.Millisecond)
	sent := time.Now()
	l.Signal(syscall.SIGTERM)
	// Readiness fails at once (bounded: the signal is handled within ms,
	// even on a loaded machine), liveness does not.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		code, body := probe(t, l, "/readyz")
		if code == 503 && body == "draining\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 1 s after SIGTERM: %d %q, want 503 draining", code, body)
		}
	}
	if code, _ := probe(t, l, "/healthz"); code != 503 {
		t.Errorf("/healthz during the shutdown delay: %d, want 503", code)
	}
	if code, body := probe(t, l, "/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez during the shutdown delay: %d %q, want 200 ok", code, body)
	}
	// Load through most of the delay: the delay starts when loopgate
	// handles the signal, after sent, so stopping at sent+2 s leaves the
	// last requests a second of margin before the listeners close.
	time.Sleep(time.Until(sent.Add(delay - time.Second)))
	z.stop(t)
	t.Logf("SIGTERM with --shutdown-delay %v, 32 connections reconnecting every %d requests: %v", delay, reconnectEvery, z)
	z.check(t, 200)
	if code := l.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if d := time.Since(sent); d < delay {
		t.Errorf("loopgate exited %v after SIGTERM, before --shutdown-delay %v was over", d, delay)
	}
	loopgatetest.WaitDead(t, 5*time.Second, pids...)
	for _, ev := range []string{"shutdown_delay", "drain", "stopped"} {
		if l.WaitLog(0, func(x loopgatetest.Line) bool { return x.Str("event") == ev }) == nil {
			t.Errorf("no %q log event", ev)
		}
	}
}

// TestReadyzFollowsCrashloop: an app whose process cannot start ends in
// crashloop once its rapid-fail window is full; /readyz then says so with
// 503 while /livez and /healthz (loopgate alone) stay 200.
func TestReadyzFollowsCrashloop(t *testing.T) {
	dir := appDir(t, `rapidFailsPerMinute="1"`, map[string]string{"TB_EXIT_AFTER": "1ms"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
	if code, body := probe(t, l, "/readyz"); code != 200 {
		t.Fatalf("/readyz before any request: %d %q (an idle app does not hold readiness back)", code, body)
	}
	c := client(t, 10*time.Second)
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		get(c, l.URL("/"))
		code, body = probe(t, l, "/readyz")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after 10 s of failing starts", code, body)
		}
	}
	if !strings.HasPrefix(body, "app /: crashloop") {
		t.Errorf("/readyz body %q, want it to name the app in crashloop", body)
	}
	for _, p := range []string{"/livez", "/healthz"} {
		if code, body := probe(t, l, p); code != 200 {
			t.Errorf("%s with an app in crashloop: %d %q, want 200 (loopgate alone)", p, code, body)
		}
	}
}
