package reliability

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bpf/bpftest"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestColdStart sends the first request to an app that is not started yet
// (it listens 200 ms after it starts) and logs how long after the app bound
// its listener the answer arrived (issue 19's cold start; the backend's
// GET /listened tells when it bound), with --accel off and on. The answer
// must come, from the new process; the time is logged, not bounded (the
// machine is shared: bench numbers, not test verdicts).
func TestColdStart(t *testing.T) {
	for _, accel := range []string{"off", "on"} {
		t.Run("accel="+accel, func(t *testing.T) {
			if accel == "on" {
				bpftest.Require(t)
			}
			dir := appDir(t, `processesPerApplication="1"`, map[string]string{"TB_LISTEN_DELAY": "200ms"})
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--accel", accel, dir}})
			c := client(t, 10*time.Second)
			code, body, err := get(c, l.URL("/listened"))
			answered := time.Now()
			if err != nil || code != 200 {
				t.Fatalf("first request: %d %q %v", code, body, err)
			}
			ns, err := strconv.ParseInt(strings.TrimSpace(body), 10, 64)
			if err != nil || ns == 0 {
				t.Fatalf("GET /listened: %q", body)
			}
			loopgatetest.KillAtCleanup(t, l.WaitReady(t, 1, 5*time.Second)...)
			after := answered.Sub(time.Unix(0, ns))
			if after < 0 {
				t.Fatalf("answered %v before the app listened", -after)
			}
			t.Logf("--accel %s: first answer %.2f ms after the app listened", accel, float64(after.Microseconds())/1000)
		})
	}
}
