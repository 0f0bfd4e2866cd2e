package reliability

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// loopgateCmd runs `loopgate ARGS...` (recycle, stop, start) with a 60 s
// bound and returns its exit status, stdout and stderr.
func loopgateCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runAs(t, nil, loopgatetest.Loopgate(t), args...)
}

// runAs runs exe with args, under the wrap command (setpriv ...) when
// given, bounded by 60 s.
func runAs(t *testing.T, wrap []string, exe string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append(slices.Clone(wrap), exe), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	case err != nil:
		t.Fatalf("%s: %v", argv, err)
	}
	return 0, out.String(), errb.String()
}

// TestControlRecycleUnderLoad: `loopgate recycle` with processesPerApplication
// 3, twice, while 16 keep-alive connections send GETs: no request fails,
// every process is replaced each time, the old ones exit, and the reason
// "manual" is in the log.
func TestControlRecycleUnderLoad(t *testing.T) {
	dir := appDir(t, `processesPerApplication="3"`, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
	if code, _, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	first := l.WaitReady(t, 3, 20*time.Second)
	loopgatetest.KillAtCleanup(t, first...)

	z := startGetLoad(t, 16, l.URL("/"), pidBody, 0)
	old := first
	for round := 1; round <= 2; round++ {
		time.Sleep(500 * time.Millisecond)
		began := time.Now()
		code, out, errText := loopgateCmd(t, "recycle", "--control", l.Control)
		t.Logf("recycle %d took %v: %s", round, time.Since(began).Round(time.Millisecond), strings.TrimSpace(out))
		if code != 0 || !strings.Contains(out, "/: recycled: 3 new process(es) ready") {
			t.Fatalf("loopgate recycle: exit %d, stdout %q, stderr %q", code, out, errText)
		}
		loopgatetest.WaitDead(t, 10*time.Second, old...)
		now := l.WaitReady(t, 3, 10*time.Second)
		loopgatetest.KillAtCleanup(t, now...)
		for _, p := range now {
			if slices.Contains(old, p) {
				t.Fatalf("process %d survived recycle %d (before %v, after %v)", p, round, old, now)
			}
		}
		old = now
	}
	time.Sleep(500 * time.Millisecond)
	z.stop(t)
	t.Logf("load: %v", z)
	if z.failed.Load() != 0 {
		t.Errorf("requests failed during the recycles: %v; loopgate said %v", z, badGateways(l))
	}
	if z.ok.Load() < 100 {
		t.Errorf("only %d requests succeeded: the load did not run", z.ok.Load())
	}
	manual := l.Count(func(x loopgatetest.Line) bool { return x.Str("event") == "recycle" && x.Str("reason") == "manual" })
	if manual != 2 {
		t.Errorf("%d recycle log lines with reason manual, want 2", manual)
	}
	if a := l.Status(t).Apps[0]; a.Recycles != 2 || a.RecyclesByReason["manual"] != 2 || a.RecyclesByReason["config"] != 0 {
		t.Errorf("/status recycles %d, by reason %v; want 2, all manual", a.Recycles, a.RecyclesByReason)
	}
	if m := metric(t, l, `loopgate_app_recycles_total{app="/",reason="manual"}`); m != 2 {
		t.Errorf(`loopgate_app_recycles_total{app="/",reason="manual"} = %v, want 2`, m)
	}
}

// TestControlStopStart: `loopgate stop` stops the app's processes and
// requests get 503 Service Unavailable with no process started; a recycle
// of a stopped app fails; `loopgate start` serves again. Unknown apps and
// missing arguments are usage errors.
func TestControlStopStart(t *testing.T) {
	dir := appDir(t, `processesPerApplication="2"`, nil)
	other := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir, "/other=" + other}})
	c := client(t, 10*time.Second)
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	pids := l.WaitReady(t, 2, 20*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)

	code, out, errText := loopgateCmd(t, "stop", "--control", l.Control, "/")
	if code != 0 || !strings.HasPrefix(out, "/: stopped; pids ") {
		t.Fatalf("loopgate stop /: exit %d, stdout %q, stderr %q", code, out, errText)
	}
	// stop returns once they have exited.
	for _, p := range pids {
		if loopgatetest.Alive(p) {
			t.Errorf("process %d still alive after loopgate stop returned", p)
		}
	}
	for range 3 {
		code, body, err := get(c, l.URL("/x"))
		if err != nil || code != 503 || !strings.Contains(body, "HTTP Error 503. The service is unavailable.") {
			t.Fatalf("GET / of a stopped app: %d %q %v", code, body, err)
		}
	}
	st := l.Status(t).Apps[0]
	if st.State != "stopped" {
		t.Errorf("/status state %q, want stopped", st.State)
	}
	for _, p := range st.Processes {
		if p.PID != 0 || p.State != "stopped" {
			t.Errorf("a stopped app's slot: %+v", p)
		}
	}
	if st.Starts != 2 {
		t.Errorf("%d starts: a request to a stopped app started a process", st.Starts)
	}
	// The other app is untouched.
	if code, _, err := get(c, l.URL("/other/")); err != nil || code != 200 {
		t.Errorf("GET /other/ while / is stopped: %d %v", code, err)
	}
	if code, out, errText := loopgateCmd(t, "stop", "--control", l.Control, "/"); code != 0 || out != "/: already stopped\n" {
		t.Errorf("second stop: exit %d, stdout %q, stderr %q", code, out, errText)
	}
	if code, _, errText := loopgateCmd(t, "recycle", "--control", l.Control, "/"); code != 1 || !strings.Contains(errText, "the app is stopped") {
		t.Errorf("recycle of a stopped app: exit %d, stderr %q", code, errText)
	}

	code, out, errText = loopgateCmd(t, "start", "--control", l.Control, "/")
	if code != 0 || !strings.HasPrefix(out, "/: started") {
		t.Fatalf("loopgate start /: exit %d, stdout %q, stderr %q", code, out, errText)
	}
	code, body, err := get(c, l.URL("/"))
	if err != nil || code != 200 {
		t.Fatalf("GET / after start: %d %q %v", code, body, err)
	}
	now := l.WaitReady(t, 2, 20*time.Second)
	loopgatetest.KillAtCleanup(t, now...)
	if st := l.Status(t).Apps[0].State; st != "ready" {
		t.Errorf("state %q after start", st)
	}

	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"stop", "--control", l.Control, "/nope"}, 2, `no app is mounted at "/nope" (mounted: /, /other)`},
		{[]string{"stop", "--control", l.Control}, 2, "name the app"},
		{[]string{"recycle", "--contrl", l.Control}, 2, "did you mean --control?"},
		{[]string{"recycle", "--control", l.Control + ".missing"}, 1, "no loopgate serve listens on the control socket"},
	} {
		code, _, errText := loopgateCmd(t, c.args...)
		if code != c.code || !strings.Contains(errText, c.err) {
			t.Errorf("loopgate %q: exit %d, stderr %q; want %d and %q", c.args, code, errText, c.code, c.err)
		}
	}
	// Case and slashes as an operator types them.
	if code, out, errText := loopgateCmd(t, "recycle", "--control", l.Control, "OTHER/"); code != 0 || !strings.HasPrefix(out, "/other: ") {
		t.Errorf("recycle OTHER/: exit %d, stdout %q, stderr %q", code, out, errText)
	}
}

// TestControlOtherUser: another local user cannot use the control socket
// (mode 0600), even with the way to it open, and the subcommand says why.
// Root only: CI runs as root.
func TestControlOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run loopgate recycle as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv(1)")
	}
	dir := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	// The socket file's mode is what must keep nobody out, not the
	// harness's 0700 directory; and nobody needs a loopgate it can run.
	sockDir := filepath.Dir(l.Control)
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(loopgatetest.Loopgate(t))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(sockDir, "loopgate")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(l.Control)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	wrap := []string{"setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"}
	code, out, errText := runAs(t, wrap, exe, "recycle", "--control", l.Control)
	if code != 1 || !strings.Contains(errText, "permission denied") {
		t.Errorf("recycle as nobody: exit %d, stdout %q, stderr %q; want 1 and permission denied", code, out, errText)
	}
	if n := l.Count(func(x loopgatetest.Line) bool { return x.Str("event") == "control" }); n != 0 {
		t.Errorf("loopgate logged %d control requests from nobody", n)
	}
	// Root itself can.
	if code, out, errText := loopgateCmd(t, "recycle", "--control", l.Control); code != 0 {
		t.Errorf("recycle as root: exit %d, stdout %q, stderr %q", code, out, errText)
	}
}

// TestControlDuringDrain: after a SIGTERM the control socket stays while
// in-flight requests drain (as nginx's and HAProxy's runtime sockets do in
// a graceful stop), so `loopgate recycle` still reaches the serve; the
// socket is removed once loopgate has exited.
func TestControlDuringDrain(t *testing.T) {
	dir := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--drain-timeout", "20s", dir}})
	c := client(t, 15*time.Second)
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	loopgatetest.KillAtCleanup(t, l.WaitReady(t, 1, 10*time.Second)...)
	slow := make(chan error, 1)
	go func() {
		_, _, err := get(client(t, 15*time.Second), l.URL("/sleep?ms=3000"))
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond) // the slow request is in flight
	l.Signal(syscall.SIGTERM)
	if l.WaitLog(5*time.Second, func(x loopgatetest.Line) bool { return x.Str("event") == "drain" }) == nil {
		t.Fatal("no drain log line within 5 s of SIGTERM")
	}
	time.Sleep(100 * time.Millisecond) // past tableflip's stop, which unlinked the socket
	code, out, errText := loopgateCmd(t, "recycle", "--control", l.Control)
	if code != 0 || !strings.Contains(out, "recycled") {
		t.Errorf("loopgate recycle during the drain: exit %d, stdout %q, stderr %q", code, out, errText)
	}
	if err := <-slow; err != nil {
		t.Errorf("the request in flight at SIGTERM: %v", err)
	}
	if code := l.Wait(20 * time.Second); code != 0 {
		t.Errorf("loopgate exited %d after the drain", code)
	}
	if _, err := os.Stat(l.Control); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("control socket after exit: %v, want it removed", err)
	}
}
