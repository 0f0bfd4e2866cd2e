package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// The app pool settings of issue 14, each with the real binary and short
// durations: recycles (periodicRestartRequests, periodicRestartTime,
// periodicRestartPrivateMemory, periodicRestartSchedule) move traffic to a
// new process without a failed request, idleTimeout stops and the next
// request starts, AlwaysRunning starts before any request and holds
// /readyz back until then, and pinging replaces a hung process.

// poolApp writes a web.config running the test backend with handler
// settings (name, value pairs) and environment variables.
func poolApp(t *testing.T, settings []string, env map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var hs, vars strings.Builder
	for i := 0; i+1 < len(settings); i += 2 {
		fmt.Fprintf(&hs, "        <handlerSetting name=%q value=%q />\n", settings[i], settings[i+1])
	}
	for k, v := range env {
		fmt.Fprintf(&vars, "        <environmentVariable name=%q value=%q />\n", k, v)
	}
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q shutdownTimeLimit="2" startupTimeLimit="10" rapidFailsPerMinute="100">
      <handlerSettings>
%s      </handlerSettings>
      <environmentVariables>
%s      </environmentVariables>
    </aspNetCore>
  </system.webServer>
</configuration>
`, loopgatetest.Program(t, backendPkg), hs.String(), vars.String())
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pidOf fetches / and returns the PID that answered, failing t on anything
// but 200.
func pidOf(t *testing.T, l *loopgatetest.Process) int {
	t.Helper()
	code, body, err := get(client(t, 10*time.Second), l.URL("/"))
	var pid int
	if err != nil || code != 200 {
		t.Fatalf("GET /: %d %q %v", code, body, err)
	}
	if _, err := fmt.Sscanf(body, "pid=%d", &pid); err != nil {
		t.Fatalf("GET /: %q", body)
	}
	loopgatetest.KillAtCleanup(t, pid)
	return pid
}

// waitNewPID polls /status until slot 0 runs a ready process other than
// old, and returns it and how long that took.
func waitNewPID(t *testing.T, l *loopgatetest.Process, old int, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < timeout {
		if pids := l.ReadyPIDs(t); len(pids) > 0 && pids[0] != old {
			loopgatetest.KillAtCleanup(t, pids[0])
			return pids[0], time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d not replaced within %v", old, timeout)
	return 0, 0
}

// load sends requests to / from workers connections until stop is closed,
// and returns how many were answered 200 and the PIDs that answered; every
// other outcome is an error of t.
func load(t *testing.T, l *loopgatetest.Process, workers int, stop <-chan struct{}) (int64, map[int]int) {
	t.Helper()
	var ok atomic.Int64
	var mu sync.Mutex
	pids := map[int]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			c := client(t, 10*time.Second)
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := get(c, l.URL("/"))
				var pid int
				if err != nil || code != 200 {
					t.Errorf("GET /: %d %q %v", code, body, err)
					return
				}
				fmt.Sscanf(body, "pid=%d", &pid)
				ok.Add(1)
				mu.Lock()
				pids[pid]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for pid := range pids {
		loopgatetest.KillAtCleanup(t, pid)
	}
	return ok.Load(), pids
}

func TestPoolPeriodicRestartRequests(t *testing.T) {
	dir := poolApp(t, []string{"periodicRestartRequests", "5"}, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	first := pidOf(t, l)
	for i := 2; i <= 5; i++ {
		if pid := pidOf(t, l); pid != first {
			t.Fatalf("request %d answered by %d, not %d", i, pid, first)
		}
	}
	second, took := waitNewPID(t, l, first, 10*time.Second)
	t.Logf("new process %d ready %v after the 5th request", second, took.Round(time.Millisecond))
	loopgatetest.WaitDead(t, 5*time.Second, first)
	if pid := pidOf(t, l); pid != second {
		t.Errorf("after the recycle / is answered by %d, want %d", pid, second)
	}
	if n := metric(t, l, `loopgate_app_recycles_total{app="/",reason="requests"}`); n != 1 {
		t.Errorf("requests recycles = %v, want 1", n)
	}
	if l.WaitLog(time.Second, func(ln loopgatetest.Line) bool {
		return ln.Str("event") == "recycle" && ln.Str("reason") == "requests" && int(ln["pid"].(float64)) == first
	}) == nil {
		t.Error("no recycle log line with reason requests")
	}

	// Under load, every process is recycled after 20 requests: many
	// overlapped recycles, not one failed request. (A process serves on
	// until its successor is ready, so it serves more than 20.)
	t.Run("under load", func(t *testing.T) {
		dir := poolApp(t, []string{"periodicRestartRequests", "20"}, nil)
		l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
		pidOf(t, l)
		stop := make(chan struct{})
		time.AfterFunc(3*time.Second, func() { close(stop) })
		n, pids := load(t, l, 4, stop)
		recycles := metric(t, l, `loopgate_app_recycles_total{app="/",reason="requests"}`)
		t.Logf("%d requests, 0 failed, %d processes, %v recycles", n, len(pids), recycles)
		if len(pids) < 3 || recycles < 2 {
			t.Errorf("%d processes and %v recycles in %d requests, want several", len(pids), recycles, n)
		}
	})
}

func TestPoolPeriodicRestartTime(t *testing.T) {
	dir := poolApp(t, []string{"periodicRestartTime", "00:00:02"}, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
	first := pidOf(t, l)
	start := time.Now()
	stop := make(chan struct{})
	var n int64
	var pids map[int]int
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		n, pids = load(t, l, 2, stop)
	}()
	// Until the second recycle's new process has served a while.
	var second time.Duration
	for time.Since(start) < 20*time.Second {
		if metric(t, l, `loopgate_app_recycles_total{app="/",reason="time"}`) >= 2 {
			second = time.Since(start)
			time.Sleep(500 * time.Millisecond)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	<-loaded
	t.Logf("%d requests, 0 failed, answered by %d processes; the second recycle %v after the first process was ready",
		n, len(pids), second.Round(time.Millisecond))
	// Each process is up 2 s (checked every 0.5 s) before its successor
	// starts: the second recycle comes 4-5 s after the first start.
	if second == 0 || second < 3500*time.Millisecond || second > 10*time.Second {
		t.Errorf("second recycle after %v, want about 4-5 s", second)
	}
	if len(pids) < 3 {
		t.Errorf("answered by %d processes, want 3 (two recycles)", len(pids))
	}
	loopgatetest.WaitDead(t, 5*time.Second, first)
}

func TestPoolPeriodicRestartPrivateMemory(t *testing.T) {
	// 64 MiB: well above the backend's own (about 10 MiB), well below it
	// after /alloc?mb=100.
	dir := poolApp(t, []string{"periodicRestartPrivateMemory", "65536"}, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	first := pidOf(t, l)
	time.Sleep(3 * time.Second) // a check or more below the limit
	if pids := l.ReadyPIDs(t); len(pids) != 1 || pids[0] != first {
		t.Fatalf("recycled below the limit: %v", pids)
	}
	code, body, err := get(client(t, 10*time.Second), l.URL("/alloc?mb=100"))
	if err != nil || code != 200 {
		t.Fatalf("/alloc: %d %q %v", code, body, err)
	}
	second, took := waitNewPID(t, l, first, 15*time.Second)
	t.Logf("%s; replaced by %d %v later (checked every 2 s)", strings.TrimSpace(body), second, took.Round(time.Millisecond))
	if took > 2*time.Second+time.Second+3*time.Second {
		t.Errorf("replaced %v after going over the limit, want within the 2 s check, a tick and the start", took)
	}
	loopgatetest.WaitDead(t, 5*time.Second, first)
	if n := metric(t, l, `loopgate_app_recycles_total{app="/",reason="memory"}`); n != 1 {
		t.Errorf("memory recycles = %v, want 1", n)
	}
	if l.WaitLog(time.Second, func(ln loopgatetest.Line) bool { return ln.Str("reason") == "memory" && ln["memory_bytes"] != nil }) == nil {
		t.Error("no recycle log line with reason memory and memory_bytes")
	}
}

func TestPoolPeriodicRestartSchedule(t *testing.T) {
	// 8 s from now, to the second (hh:mm:ss is accepted, as
	// applicationHost.config writes schedule times), and a time that does
	// not come during the test.
	at := time.Now().Add(8 * time.Second).Truncate(time.Second)
	dir := poolApp(t, []string{"periodicRestartSchedule", at.Add(12*time.Hour).Format("15:04") + "," + at.Format("15:04:05")}, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	first := pidOf(t, l)
	if time.Until(at) < time.Second {
		t.Fatalf("loopgate and its app took more than 7 s to start; the scheduled time %s is too close", at.Format("15:04:05"))
	}
	time.Sleep(time.Until(at) - 500*time.Millisecond)
	if pids := l.ReadyPIDs(t); len(pids) != 1 || pids[0] != first {
		t.Fatalf("recycled before %s: %v", at.Format("15:04:05"), pids)
	}
	second, took := waitNewPID(t, l, first, 10*time.Second)
	t.Logf("scheduled %s: new process %d ready %v after", at.Format("15:04:05"), second, (took - 500*time.Millisecond).Round(time.Millisecond))
	if took > 500*time.Millisecond+3*time.Second {
		t.Errorf("ready %v after the scheduled time", took-500*time.Millisecond)
	}
	loopgatetest.WaitDead(t, 5*time.Second, first)
	if n := metric(t, l, `loopgate_app_recycles_total{app="/",reason="schedule"}`); n != 1 {
		t.Errorf("schedule recycles = %v, want 1", n)
	}
}

func TestPoolIdleTimeout(t *testing.T) {
	dir := poolApp(t, []string{"idleTimeout", "00:00:01"}, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	first := pidOf(t, l)
	start := time.Now()
	if l.WaitLog(10*time.Second, func(ln loopgatetest.Line) bool { return ln.Str("event") == "idle_stop" }) == nil {
		t.Fatal("no idle_stop within 10 s of the last request (idleTimeout 1 s)")
	}
	took := time.Since(start)
	loopgatetest.WaitDead(t, 5*time.Second, first)
	t.Logf("stopped %v after the last request (idleTimeout 1 s, checked every 250 ms)", took.Round(time.Millisecond))
	if took < time.Second || took > 3*time.Second {
		t.Errorf("idle stop %v after the last request, want 1 s and a tick", took)
	}
	st := l.Status(t).Apps[0]
	if st.State != "idle" || st.Crashes != 0 || st.Recycles != 0 {
		t.Errorf("after the idle stop: state %s, %d crashes, %d recycles", st.State, st.Crashes, st.Recycles)
	}
	second := pidOf(t, l)
	if second == first {
		t.Fatal("the next request was answered by the stopped process")
	}
	// A request that lasts longer than idleTimeout keeps it running.
	code, _, err := get(client(t, 10*time.Second), l.URL("/sleep?ms=2500"))
	if err != nil || code != 200 {
		t.Fatalf("/sleep: %d %v", code, err)
	}
	if pids := l.ReadyPIDs(t); len(pids) != 1 || pids[0] != second {
		t.Errorf("stopped during a request longer than idleTimeout: %v", pids)
	}
}

func TestPoolAlwaysRunning(t *testing.T) {
	dir := poolApp(t, []string{"startMode", "AlwaysRunning"}, map[string]string{"TB_LISTEN_DELAY": "3s"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	// Listening takes the backend 3 s: /readyz waits for it.
	if code, body := probe(t, l, "/readyz"); code != 503 || !strings.Contains(body, "AlwaysRunning") {
		t.Errorf("/readyz while the AlwaysRunning app starts: %d %q, want 503 naming it", code, body)
	}
	pids := l.WaitReady(t, 1, 15*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	if code, body := probe(t, l, "/readyz"); code != 200 {
		t.Errorf("/readyz once it is ready: %d %q", code, body)
	}
	st := l.Status(t).Apps[0]
	if st.Starts != 1 || st.NotReady != "" {
		t.Errorf("status %+v", st)
	}
	if n := l.Count(func(ln loopgatetest.Line) bool { return ln.Str("event") == "access" }); n != 0 {
		t.Errorf("%d requests were made", n)
	}
	// A crash: started again at once, no request needed either.
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second, took := waitNewPID(t, l, pids[0], 15*time.Second)
	t.Logf("ready before any request; after a crash %d replaced it in %v", second, took.Round(time.Millisecond))
}

// TestPoolPingReplacesHungBackend closes the limit docs/reliability.md
// named: a process that stops answering while the kernel still completes
// connections to it (SIGSTOP with the default backlog) was replaced only
// once its backlog filled. With pinging it is replaced within
// pingInterval + pingResponseTime and its tree killed.
func TestPoolPingReplacesHungBackend(t *testing.T) {
	dir := poolApp(t, []string{"pingingEnabled", "true", "pingPath", "/pid", "pingInterval", "00:00:01", "pingResponseTime", "00:00:02"}, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	first := pidOf(t, l)
	time.Sleep(4 * time.Second) // four answered pings
	if pids := l.ReadyPIDs(t); len(pids) != 1 || pids[0] != first {
		t.Fatalf("a process answering its pings was replaced: %v", pids)
	}
	if err := syscall.Kill(first, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	second, took := waitNewPID(t, l, first, 20*time.Second)
	t.Logf("hung process %d replaced by %d %v after SIGSTOP (pingInterval 1 s, pingResponseTime 2 s)", first, second, took.Round(time.Millisecond))
	if took < 2*time.Second || took > 1*time.Second+2*time.Second+3*time.Second {
		t.Errorf("replaced %v after it hung, want between pingResponseTime and pingInterval + pingResponseTime and a start", took)
	}
	loopgatetest.WaitDead(t, 5*time.Second, first)
	if pid := pidOf(t, l); pid != second {
		t.Errorf("/ answered by %d, want %d", pid, second)
	}
	if n := metric(t, l, `loopgate_app_recycles_total{app="/",reason="ping"}`); n != 1 {
		t.Errorf("ping recycles = %v, want 1", n)
	}
	if st := l.Status(t).Apps[0]; st.Crashes != 0 {
		t.Errorf("a hung process replaced counts as a crash: %d", st.Crashes)
	}
}
