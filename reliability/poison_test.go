package reliability

import (
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestPoisonRequestNotReplayed: a GET that makes its backend exit (here
// with status 3, as .NET's Environment.Exit or a crash would) gets 502.3
// and is not sent on to the app's other process, so it kills one process
// and uses one unit of rapidFailsPerMinute: with rapidFailsPerMinute="1"
// the app keeps serving instead of being blocked for a minute. Before,
// the request was replayed: both processes died, two crashes, 502.5.
func TestPoisonRequestNotReplayed(t *testing.T) {
	dir := appDir(t, `processesPerApplication="2" rapidFailsPerMinute="1"`, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
	c := client(t, 10*time.Second)
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	l.WaitReady(t, 2, 10*time.Second)
	before := l.ReadyPIDs(t)
	for _, pid := range before {
		loopgatetest.KillAtCleanup(t, pid)
	}

	code, body, err := get(c, l.URL("/exit?code=3"))
	if err != nil || code != 502 || !strings.Contains(body, "502.3") {
		t.Fatalf("the poison request: %d %v %.80q; want 502.3", code, err, body)
	}
	var dead, alive []int
	for _, pid := range before {
		if loopgatetest.Alive(pid) {
			alive = append(alive, pid)
		} else {
			dead = append(dead, pid)
		}
	}
	if len(dead) != 1 || len(alive) != 1 {
		t.Fatalf("of the processes %v, %v died and %v live; want one of each (the request was replayed?)", before, dead, alive)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Status(t).Apps[0].Crashes < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := l.Status(t).Apps[0].Crashes; n != 1 {
		t.Errorf("supervisor counted %d crashes, want 1", n)
	}
	// The app still serves: one crash is within rapidFailsPerMinute="1",
	// two were past it (502.5 for a minute).
	for i := range 4 {
		code, body, err := get(c, l.URL("/"))
		if err != nil || code != 200 || !strings.HasPrefix(body, "pid=") {
			t.Fatalf("request %d after the poison request: %d %v %.80q; want 200", i, code, err, body)
		}
	}
}
