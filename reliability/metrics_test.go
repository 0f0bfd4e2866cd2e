package reliability

import (
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// The per-app load gauges in /metrics follow a request: while one is held
// by the backend the app has one request in flight on one busy upstream
// connection; afterwards none in flight and the connection idle in the pool.
func TestAppLoadMetrics(t *testing.T) {
	l := startLoopgate(t, loopgatetest.Options{Args: []string{appDir(t, `processesPerApplication="1"`, nil)}})
	c := client(t, 10*time.Second)
	if code, body, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Fatalf("GET /: %d %q %v", code, body, err)
	}
	type load struct{ inFlight, busy, idle float64 }
	read := func() load {
		return load{
			metric(t, l, `loopgate_app_requests_in_flight{app="/"}`),
			metric(t, l, `loopgate_upstream_connections{app="/",state="busy"}`),
			metric(t, l, `loopgate_upstream_connections{app="/",state="idle"}`),
		}
	}
	waitLoad := func(want load) {
		t.Helper()
		var got load
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if got = read(); got == want {
				return
			}
		}
		t.Fatalf("app / load %+v, want %+v", got, want)
	}
	waitLoad(load{idle: 1})

	done := make(chan error, 1)
	go func() {
		code, body, err := get(client(t, 10*time.Second), l.URL("/sleep?ms=1500"))
		if err == nil && (code != 200 || body != "slept") {
			t.Errorf("GET /sleep: %d %q", code, body)
		}
		done <- err
	}()
	// The held request takes the pooled connection.
	waitLoad(load{inFlight: 1, busy: 1})
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GET /sleep did not finish")
	}
	waitLoad(load{idle: 1})
}
