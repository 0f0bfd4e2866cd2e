package reliability

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// loadResult is what a load run saw.
type loadResult struct {
	ok, failed int64
	kills      int
	errs       map[string]int // failure kind -> count
}

func (r loadResult) String() string {
	var kinds []string
	for k, n := range r.errs {
		kinds = append(kinds, fmt.Sprintf("%dx %s", n, k))
	}
	return fmt.Sprintf("%d ok, %d failed, %d kills %v", r.ok, r.failed, r.kills, kinds)
}

// TestBackendSIGKILLUnderLoad runs 32 keep-alive connections of GETs
// against an app while one of its backends is SIGKILLed every 2 s, with
// processesPerApplication 1 and 3. GETs are idempotent and carry no body:
// one whose backend died before it answered is sent again, so with three
// processes none may fail; with one, the client waits for the restart.
// The run lasts 10 s (20 s with LOOPGATE_LONG=1).
func TestBackendSIGKILLUnderLoad(t *testing.T) {
	dur := 10 * time.Second
	if long() {
		dur = 20 * time.Second
	}
	for _, ppa := range []int{1, 3} {
		t.Run(fmt.Sprintf("processes=%d", ppa), func(t *testing.T) {
			dir := appDir(t, fmt.Sprintf(`processesPerApplication="%d" rapidFailsPerMinute="100"`, ppa), nil)
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
			warm := client(t, 10*time.Second)
			if code, _, err := get(warm, l.URL("/")); err != nil || code != 200 {
				t.Fatalf("first request: %d %v", code, err)
			}
			l.WaitReady(t, ppa, 10*time.Second)
			r := killUnderLoad(t, l, 32, dur, 2*time.Second)
			t.Logf("processes=%d, 32 connections, %v, a SIGKILL every 2 s: %v", ppa, dur, r)
			if r.kills < int(dur/(2*time.Second))-1 {
				t.Errorf("only %d kills happened", r.kills)
			}
			if r.ok < 1000 {
				t.Errorf("only %d requests succeeded: the load did not run", r.ok)
			}
			if r.failed != 0 {
				t.Errorf("%d requests failed (want 0): %v; loopgate said %v", r.failed, r, badGateways(l))
			}
			deadline := time.Now().Add(5 * time.Second)
			for int(l.Status(t).Apps[0].Crashes) < r.kills && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if crashes := l.Status(t).Apps[0].Crashes; int(crashes) < r.kills {
				t.Errorf("supervisor counted %d crashes for %d kills", crashes, r.kills)
			}
		})
	}
}

// killUnderLoad runs conns client loops of GET / for dur and SIGKILLs one
// ready backend (rotating over slots) every period.
func killUnderLoad(t *testing.T, l *loopgatetest.Process, conns int, dur, period time.Duration) loadResult {
	t.Helper()
	z := startGetLoad(t, conns, l.URL("/"), pidBody, 0)
	kills := 0
	var killed []int
	tick := time.NewTicker(period)
	end := time.After(dur)
loop:
	for {
		select {
		case <-tick.C:
			pids := l.ReadyPIDs(t)
			if len(pids) == 0 {
				continue
			}
			pid := pids[kills%len(pids)]
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				kills++
				killed = append(killed, pid)
			}
		case <-end:
			break loop
		}
	}
	tick.Stop()
	z.stop(t)
	loopgatetest.WaitDead(t, 5*time.Second, killed...)
	return loadResult{ok: z.ok.Load(), failed: z.failed.Load(), kills: kills, errs: z.errs}
}

// badGateways tallies loopgate's "bad gateway" log lines by error, with
// addresses left out.
func badGateways(l *loopgatetest.Process) map[string]int {
	out := map[string]int{}
	for _, line := range l.Lines() {
		if line.Str("message") != "bad gateway" {
			continue
		}
		e := line.Str("error")
		if i := strings.LastIndex(e, ": "); i >= 0 {
			e = e[i+2:]
		}
		out[e]++
	}
	return out
}

// errKind shortens a client error to its kind for the report.
func errKind(err error) string {
	s := err.Error()
	for _, k := range []string{"connection reset", "EOF", "timeout", "refused", "broken pipe"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return s
}
