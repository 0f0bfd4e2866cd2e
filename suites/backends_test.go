package suites

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// Real non-Go backends, each started through its example web.config
// (examples/python-http-server, examples/gunicorn), served, recycled by a
// web.config change and stopped by loopgate's drain, with no process of
// theirs left.

func TestPythonHTTPServer(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		missing(t, "python3 is not on PATH (make suite-deps installs it)")
	}
	hostedLifecycle(t, "../examples/python-http-server", "/hello.txt", "hello from python3 -m http.server behind loopgate", 1)
}

// TestGunicorn: gunicorn forks two workers; a stop must not leave them.
func TestGunicorn(t *testing.T) {
	if _, err := exec.LookPath("gunicorn"); err != nil {
		missing(t, "gunicorn is not on PATH (make suite-deps installs Debian's)")
	}
	hostedLifecycle(t, "../examples/gunicorn", "/x", "hello from gunicorn worker", 3)
}

// hostedLifecycle copies the example app in src to a temporary directory,
// serves it through loopgate, recycles it with a web.config change, stops
// loopgate, and requires every process of the backend's tree (procs of
// them at least, once started) to be gone.
func hostedLifecycle(t *testing.T, src, path, want string, procs int) {
	app := loopgatetest.CopyDir(t, src)
	l := startLoopgate(t, "--drain-timeout", "5s", app)
	get := func() string {
		t.Helper()
		body := httpGet(t, l.Front, path)
		if !strings.Contains(body, want) {
			t.Fatalf("GET %s: %q, want %q in it", path, body, want)
		}
		return body
	}
	get()
	first := l.WaitReady(t, 1, 20*time.Second)[0]
	tree1 := waitTree(t, first, procs)
	t.Logf("first start: pid %d, process tree %v", first, tree1)

	// Recycle: a changed web.config starts a new process and stops the old
	// one with everything it started.
	cfg := filepath.Join(app, "web.config")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `startupTimeLimit="20" />`, `startupTimeLimit="20">
      <environmentVariables><environmentVariable name="RECYCLE" value="1" /></environmentVariables>
    </aspNetCore>`, 1)
	if changed == string(b) {
		t.Fatal("the example's web.config no longer ends its aspNetCore element as the test expects")
	}
	if err := os.WriteFile(cfg, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	var second int
	deadline := time.Now().Add(30 * time.Second)
	for {
		if pids := l.ReadyPIDs(t); len(pids) == 1 && pids[0] != first {
			second = pids[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new process 30 s after the web.config change (ready: %v)", l.ReadyPIDs(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	loopgatetest.WaitDead(t, 15*time.Second, tree1...)
	body := get()
	if procs > 1 && !strings.Contains(body, "recycle=1") {
		t.Errorf("after the recycle the app answers %q: not the new configuration", body)
	}
	tree2 := waitTree(t, second, procs)
	t.Logf("after the recycle: pid %d, process tree %v; the first tree is gone", second, tree2)

	// Stop: loopgate's drain stops the backend and all it started.
	l.Signal(syscall.SIGTERM)
	if code := l.Wait(30 * time.Second); code != 0 {
		t.Errorf("loopgate exited %d after SIGTERM, want 0", code)
	}
	loopgatetest.WaitDead(t, 5*time.Second, tree2...)
	if logged(l, "did not stop in time") {
		t.Error("the drain logged that the backends did not stop in time")
	}
}

// TestGunicornAfterLoopgateSIGKILL: when loopgate itself is SIGKILLed,
// gunicorn's whole tree goes within 2 s: the master (loopgate's direct
// child, Pdeathsig) and the workers it forked (the keeper kills the
// backends' cgroups, or their process group without cgroups; README,
// Process-tree containment). Before containment the workers lived on as
// orphans until gunicorn's sync worker noticed its parent change, up to
// --timeout/2 = 15 s later.
func TestGunicornAfterLoopgateSIGKILL(t *testing.T) {
	if _, err := exec.LookPath("gunicorn"); err != nil {
		missing(t, "gunicorn is not on PATH (make suite-deps installs Debian's)")
	}
	app := loopgatetest.CopyDir(t, "../examples/gunicorn")
	l := startLoopgate(t, app)
	httpGet(t, l.Front, "/x")
	master := l.WaitReady(t, 1, 20*time.Second)[0]
	tree := waitTree(t, master, 3)
	loopgatetest.KillAtCleanup(t, tree...)
	began := time.Now()
	l.Kill()
	loopgatetest.WaitDead(t, 2*time.Second-time.Since(began), tree...)
	t.Logf("gunicorn's tree %v gone %v after loopgate's SIGKILL", tree, time.Since(began).Round(time.Millisecond))
}

// waitTree waits (20 s at most) until the process tree under pid counts at
// least n processes, and returns it: pid first, then its descendants.
func waitTree(t *testing.T, pid, n int) []int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		tree := processTree(pid)
		if len(tree) >= n {
			loopgatetest.KillAtCleanup(t, tree...)
			return tree
		}
		if time.Now().After(deadline) {
			t.Fatalf("process tree of %d: %v, want %d processes", pid, tree, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processTree lists pid and its live descendants, read from /proc.
func processTree(pid int) []int {
	if !loopgatetest.Alive(pid) {
		return nil
	}
	children := map[int][]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}
