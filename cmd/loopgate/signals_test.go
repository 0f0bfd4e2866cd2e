package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestDrainOnSIGTERM: with a request in flight, SIGTERM turns /healthz red
// at once, closes the front listener, lets the request finish, stops the
// backend, tells systemd STOPPING=1 and exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	notifyEnv, next := notifySocket(t)
	in := loopgatetest.Start(t, loopgatetest.Options{Env: []string{notifyEnv}, Args: []string{"--drain-timeout", "10s", backendApp(t, "")}})
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "READY=1\n") || !strings.Contains(msg, "STATUS=serving 1 app(s) on "+in.Front) {
		t.Fatalf("first sd_notify message %q, want READY=1 with a status line", msg)
	}
	if code, body := get(t, "http://"+in.Admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz before the drain: %d %q", code, body)
	}
	_, body := get(t, "http://"+in.Front+"/pid")
	pid := pidOf(t, body)
	loopgatetest.KillAtCleanup(t, pid)

	var wg sync.WaitGroup
	var slowCode int
	var slowBody string
	var slowErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := httpc.Get("http://" + in.Front + "/slow?ms=1500")
		if err != nil {
			slowErr = err
			return
		}
		defer resp.Body.Close()
		b := make([]byte, 256)
		n, _ := resp.Body.Read(b)
		slowCode, slowBody = resp.StatusCode, string(b[:n])
	}()
	time.Sleep(300 * time.Millisecond) // the slow request has reached the backend
	in.Signal(syscall.SIGTERM)
	if msg := next(2 * time.Second); !strings.HasPrefix(msg, "STOPPING=1\n") {
		t.Errorf("sd_notify after SIGTERM: %q, want STOPPING=1", msg)
	}
	// Health is red while the request is still in flight...
	if code, body := get(t, "http://"+in.Admin+"/healthz"); code != 503 || body != "draining\n" {
		t.Errorf("/healthz during the drain: %d %q, want 503 draining", code, body)
	}
	// ...and the front listener no longer takes connections.
	if c, err := dial(in.Front); err == nil {
		c.Close()
		t.Errorf("front listener %s still accepts connections during the drain", in.Front)
	}
	if !loopgatetest.Alive(pid) {
		t.Errorf("backend %d stopped before the in-flight request finished", pid)
	}
	wg.Wait()
	if slowErr != nil || slowCode != 200 || !strings.HasPrefix(slowBody, "slow done") {
		t.Errorf("in-flight request: %d %q %v, want it finished with 200", slowCode, slowBody, slowErr)
	}
	if code := in.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	loopgatetest.WaitDead(t, time.Second, pid)
	for _, ev := range []string{"drain", "backends_stop", "stopped"} {
		if in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == ev }) == nil {
			t.Errorf("no %q log event", ev)
		}
	}
}

// TestDrainTimeoutCutsRequests: a request longer than --drain-timeout does
// not hold loopgate up.
func TestDrainTimeoutCutsRequests(t *testing.T) {
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--drain-timeout", "300ms", backendApp(t, "")}})
	_, body := get(t, "http://"+in.Front+"/pid")
	pid := pidOf(t, body)
	loopgatetest.KillAtCleanup(t, pid)
	go httpc.Get("http://" + in.Front + "/slow?ms=20000")
	time.Sleep(300 * time.Millisecond)
	began := time.Now()
	in.Signal(syscall.SIGINT)
	if code := in.Wait(10 * time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if d := time.Since(began); d > 8*time.Second {
		t.Errorf("stopping took %v with a 300ms drain timeout", d)
	}
	if in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "drain_timeout" }) == nil {
		t.Error("no drain_timeout log event")
	}
	loopgatetest.WaitDead(t, time.Second, pid)
}

// TestSIGQUITStopsAtOnce kills the backend without the graceful dance.
func TestSIGQUITStopsAtOnce(t *testing.T) {
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{backendApp(t, "")}})
	_, body := get(t, "http://"+in.Front+"/pid")
	pid := pidOf(t, body)
	loopgatetest.KillAtCleanup(t, pid)
	in.Signal(syscall.SIGQUIT)
	if code := in.Wait(5 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGQUIT, want 0", code)
	}
	loopgatetest.WaitDead(t, time.Second, pid)
}

// TestSIGHUPReload: a changed web.config recycles the app (new PID, new
// environment), sd_notify sees RELOADING=1 then READY=1; a broken one keeps
// the running configuration and shows the error in /status.
func TestSIGHUPReload(t *testing.T) {
	notifyEnv, next := notifySocket(t)
	dir := backendApp(t, `<environmentVariable name="GREETING" value="one" />`)
	in := loopgatetest.Start(t, loopgatetest.Options{Env: []string{notifyEnv}, Args: []string{dir}})
	next(5 * time.Second) // READY=1
	if _, body := get(t, "http://"+in.Front+"/env?name=GREETING"); body != "one" {
		t.Fatalf("GREETING=%q before reload", body)
	}
	_, body := get(t, "http://"+in.Front+"/pid")
	oldPID := pidOf(t, body)
	loopgatetest.KillAtCleanup(t, oldPID)

	writeBackendConfig(t, dir, `<environmentVariable name="GREETING" value="two" />`)
	in.Signal(syscall.SIGHUP)
	msg := next(5 * time.Second)
	if !strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("sd_notify on SIGHUP: %q, want RELOADING=1 and MONOTONIC_USEC", msg)
	}
	if msg := next(10 * time.Second); !strings.HasPrefix(msg, "READY=1\n") {
		t.Errorf("sd_notify after the reload: %q, want READY=1", msg)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := get(t, "http://"+in.Front+"/env?name=GREETING")
		if body == "two" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GREETING=%q 10 s after SIGHUP, want two", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, body = get(t, "http://"+in.Front+"/pid")
	newPID := pidOf(t, body)
	loopgatetest.KillAtCleanup(t, newPID)
	if newPID == oldPID {
		t.Errorf("the app was not recycled: same PID %d", newPID)
	}

	// A broken file: the running configuration stays, the error is shown.
	os.WriteFile(filepath.Join(dir, "web.config"), []byte("<configuration><system.webServer><aspNetCore processPath=\"x\" startupTimeLimit=\"4000\"/></system.webServer></configuration>"), 0o644)
	in.Signal(syscall.SIGHUP)
	next(5 * time.Second)
	if msg := next(10 * time.Second); !strings.Contains(msg, "error") {
		t.Errorf("READY status after a failed reload: %q, want it to mention the error", msg)
	}
	s := in.Status(t)
	if !strings.Contains(s.Apps[0].ConfigError, `startupTimeLimit="4000"`) {
		t.Errorf("/status config_error = %q", s.Apps[0].ConfigError)
	}
	if _, body := get(t, "http://"+in.Front+"/env?name=GREETING"); body != "two" {
		t.Errorf("after a broken reload GREETING=%q, want the running two", body)
	}
	in.Signal(syscall.SIGTERM)
	in.Wait(15 * time.Second)
}

// TestSIGUSR1ReopensLogFile is logrotate's copy-less rotation.
func TestSIGUSR1ReopensLogFile(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "loopgate.log")
	notifyEnv, next := notifySocket(t)
	in := loopgatetest.Launch(t, loopgatetest.Options{Env: []string{notifyEnv}, Args: []string{"--log-file", logFile, backendApp(t, "")}})
	if msg := next(10 * time.Second); !strings.HasPrefix(msg, "READY=1") {
		t.Fatalf("not ready: %q", msg)
	}
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	in.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logFile)
		if strings.Contains(string(b), `"event":"log_reopen"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log_reopen line in the new %s: %q", logFile, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	old, _ := os.ReadFile(logFile + ".1")
	if !strings.Contains(string(old), `"event":"ready"`) || strings.Contains(string(old), "log_reopen") {
		t.Errorf("rotated file: %q", old)
	}
	in.Signal(syscall.SIGTERM)
	in.Wait(10 * time.Second)
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), `"event":"stopped"`) {
		t.Errorf("lines after the reopen did not go to the new file: %q", b)
	}
}
