package reliability

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestHungBackend: a request the backend accepts and never answers is cut
// at requestTimeout with 502 while the process keeps serving others; a
// process that hangs completely (SIGSTOP, with a listen backlog of 2 so
// the kernel stops completing its handshakes once 3 connections queue) is
// found unreachable, killed and replaced.
func TestHungBackend(t *testing.T) {
	dir := appDir(t, `requestTimeout="00:00:01" rapidFailsPerMinute="100"`, map[string]string{"TB_BACKLOG": "2"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	c := client(t, 20*time.Second)
	code, body, err := get(c, l.URL("/"))
	if err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	pid := l.WaitReady(t, 1, 5*time.Second)[0]
	loopgatetest.KillAtCleanup(t, pid)

	t.Run("one hung request gets 502 at requestTimeout", func(t *testing.T) {
		hc := client(t, 20*time.Second)
		start := time.Now()
		code, _, err := get(hc, l.URL("/hang"))
		took := time.Since(start)
		t.Logf("hung request answered %d after %v (requestTimeout 1 s)", code, took.Round(time.Millisecond))
		if err != nil || code != 502 {
			t.Fatalf("hung request: %d %v, want 502", code, err)
		}
		if took < 900*time.Millisecond || took > 5*time.Second {
			t.Errorf("hung request freed after %v, want about 1 s", took)
		}
		// The process is not at fault for one slow request: it serves on.
		code, body, err = get(c, l.URL("/"))
		if err != nil || code != 200 || body != fmt.Sprintf("pid=%d\n", pid) {
			t.Errorf("after the timeout: %d %q %v, want 200 from pid %d", code, body, err, pid)
		}
	})

	t.Run("a stopped process is killed and replaced", func(t *testing.T) {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		failures := 0
		var newPID int
		for time.Since(start) < 30*time.Second {
			code, body, err := get(c, l.URL("/"))
			if err == nil && code == 200 && body != fmt.Sprintf("pid=%d\n", pid) {
				fmt.Sscanf(body, "pid=%d", &newPID)
				break
			}
			failures++
		}
		took := time.Since(start)
		t.Logf("stopped process replaced after %v; %d requests got 502 meanwhile", took.Round(time.Millisecond), failures)
		if newPID == 0 {
			t.Fatalf("no request served by a new process within 30 s (%d failures)", failures)
		}
		loopgatetest.WaitDead(t, 5*time.Second, pid)
		if l.WaitLog(5*time.Second, func(line loopgatetest.Line) bool {
			return line.Str("event") == "crash" && strings.Contains(line.Str("message"), "stopped accepting connections")
		}) == nil {
			t.Errorf("no crash event saying the process stopped accepting connections")
		}
		if took > 15*time.Second {
			t.Errorf("took %v to replace the stopped process", took)
		}
	})
}
