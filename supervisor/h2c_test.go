package supervisor

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// drainUpstream records the order of Drain and Close.
type drainUpstream struct {
	mu  sync.Mutex
	ops []string
}

func (u *drainUpstream) Drain() { u.mu.Lock(); u.ops = append(u.ops, "drain"); u.mu.Unlock() }
func (u *drainUpstream) Close() { u.mu.Lock(); u.ops = append(u.ops, "close"); u.mu.Unlock() }

// TestH2CAppUsesHTTP2ForProbesAndShutdown: an app with
// backendProtocol="h2c" is probed and asked to shut down over HTTP/2, and
// its upstream is drained (GOAWAY) before the shutdown request; an http1
// app never is.
func TestH2CAppUsesHTTP2ForProbesAndShutdown(t *testing.T) {
	for _, proto := range []configload.BackendProtocol{configload.BackendHTTP1, configload.BackendH2C} {
		synctest.Test(t, func(t *testing.T) {
			f := newFakeOS(func(*Cmd) behaviour { return listening() })
			spec := testSpec(t)
			spec.BackendProtocol = proto
			up := &drainUpstream{}
			s, _ := fakeSup(t, f, Options{NewUpstream: func(*Process) Upstream { return up }}, spec)
			a := s.Apps()[0]
			p := mustAcquire(t, a)
			p.Release()
			p.Unreachable()
			synctest.Wait()
			stop(t, s)
			f.mu.Lock()
			probes, shutdowns := f.h2cProbes, f.h2cShutdowns
			f.mu.Unlock()
			if len(f.shutdownRequests()) != 1 {
				t.Fatalf("%v: shutdown requests %q", proto, f.shutdownRequests())
			}
			up.mu.Lock()
			ops := strings.Join(up.ops, " ")
			up.mu.Unlock()
			if proto == configload.BackendH2C {
				// One readiness probe and the liveness check after
				// Unreachable, both over HTTP/2.
				if probes < 2 || shutdowns != 1 || ops != "drain close" {
					t.Errorf("h2c: %d HTTP/2 probes, %d HTTP/2 shutdown requests, upstream %q", probes, shutdowns, ops)
				}
			} else if probes != 0 || shutdowns != 0 || ops != "drain close" {
				t.Errorf("http1: %d HTTP/2 probes, %d HTTP/2 shutdown requests, upstream %q", probes, shutdowns, ops)
			}
		})
	}
}

// TestRealProbeH2C: the real probe tells an h2c server (ready) from an
// HTTP/1.1-only one (ErrNotHTTP2, quoting its answer) and from a closed
// port (not ready, not ErrNotHTTP2); the shutdown request reaches an h2c
// server as HTTP/2.
func TestRealProbeH2C(t *testing.T) {
	var got sync.Map
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Method+" "+r.URL.Path+" "+r.Proto+" "+r.Header.Get("MS-ASPNETCORE-TOKEN")+" "+r.Header.Get("MS-ASPNETCORE-EVENT"), true)
		w.WriteHeader(http.StatusAccepted)
	})
	h2c := httptest.NewUnstartedServer(h)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	defer h2c.Close()
	h1 := httptest.NewServer(h)
	defer h1.Close()
	port := func(s *httptest.Server) int {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
		n, _ := strconv.Atoi(p)
		return n
	}
	var os realOS
	if err := os.ProbeH2C(port(h2c), 2*time.Second); err != nil {
		t.Errorf("h2c server: %v", err)
	}
	err := os.ProbeH2C(port(h1), 2*time.Second)
	if !errors.Is(err, ErrNotHTTP2) || !strings.Contains(err.Error(), `HTTP/1.1 `) {
		t.Errorf("HTTP/1.1 server: %v", err)
	}
	l, _ := net.Listen("tcp4", "127.0.0.1:0")
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if err := os.ProbeH2C(closed, time.Second); err == nil || errors.Is(err, ErrNotHTTP2) {
		t.Errorf("closed port: %v", err)
	}
	code, err := os.SendShutdownH2C(h2c.URL+"/iisintegration", "tok", 5*time.Second)
	if code != 202 || err != nil {
		t.Fatalf("SendShutdownH2C: %d %v", code, err)
	}
	if _, ok := got.Load("POST /iisintegration HTTP/2.0 tok shutdown"); !ok {
		got.Range(func(k, _ any) bool { t.Logf("seen %v", k); return true })
		t.Error("the h2c server did not get the shutdown request over HTTP/2")
	}

}
