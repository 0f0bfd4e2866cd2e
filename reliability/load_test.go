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
)

// getLoad is client loops of GET url, each on its own keep-alive
// connection; in the zero-downtime tests (issue 16) each closes it and
// dials again every reconnectEvery requests, so that connects (the thing a
// closed listener refuses) happen all the time, not only at the start.
// Stop it with stop; it counts every request.
type getLoad struct {
	ok, failed, refused atomic.Int64
	mu                  sync.Mutex
	errs                map[string]int
	bodies              map[string]int // first line of successful bodies, for the report
	stopc               chan struct{}
	wg                  sync.WaitGroup
}

// reconnectEvery is how often the zero-downtime loads dial again.
const reconnectEvery = 8

// pidBody accepts the test backend's answer to GET /.
func pidBody(b string) bool { return strings.HasPrefix(b, "pid=") }

// startGetLoad starts conns loops of GET url that accept a 200 whose body
// satisfies okBody, each dialing again every reconnect requests (0: never).
func startGetLoad(t *testing.T, conns int, url string, okBody func(string) bool, reconnect int) *getLoad {
	t.Helper()
	z := &getLoad{errs: map[string]int{}, bodies: map[string]int{}, stopc: make(chan struct{})}
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
				if reconnect > 0 && n%reconnect == 0 {
					tr.CloseIdleConnections()
				}
			}
		}()
	}
	return z
}

func (z *getLoad) fail(kind string) {
	z.failed.Add(1)
	z.mu.Lock()
	z.errs[kind]++
	z.mu.Unlock()
}

// stop ends the loops (each finishes the request it is in) within 20 s.
func (z *getLoad) stop(t *testing.T) {
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

func (z *getLoad) String() string {
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
func (z *getLoad) check(t *testing.T, min int64) {
	t.Helper()
	if z.failed.Load() != 0 || z.refused.Load() != 0 {
		t.Errorf("want 0 failed requests and 0 refused connections: %v", z)
	}
	if z.ok.Load() < min {
		t.Errorf("only %d requests succeeded (want at least %d): the load did not run", z.ok.Load(), min)
	}
}
