package reliability

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

	"github.com/loopgate/loopgate/internal/cgroup"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// treeScript is a backend that is a process tree, as `npm start`, a
// wrapper script or gunicorn's pre-forked workers are: loopgate's direct
// child is this shell; it leaves a sleeping grandchild in its process
// group, one that has left it for a session of its own (setsid), and runs
// the server ($SERVER with the script's arguments) as another child, and
// exits when the server does. Each pid, its own included, goes into
// $PIDFILE.
const treeScript = `#!/bin/sh
sleep 600 &
echo $! >> "$PIDFILE"
setsid sleep 601 &
echo $! >> "$PIDFILE"
echo $$ >> "$PIDFILE"
"$SERVER" "$@" &
server=$!
echo $server >> "$PIDFILE"
wait $server
`

// requireContainment skips the test unless loopgate can put backends in
// cgroups here (root and a cgroup v2 hierarchy), or fails it with
// LOOPGATE_REQUIRE_BPF=1, which CI sets and which needs both anyway.
func requireContainment(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "cgroup containment tests need root"
	} else if _, err := cgroup.Mount(); err != nil {
		why = "no cgroup v2 hierarchy: " + err.Error()
	} else if _, err := exec.LookPath("setsid"); err != nil {
		why = "no setsid(1)"
	}
	if why == "" {
		return
	}
	if os.Getenv("LOOPGATE_REQUIRE_BPF") == "1" {
		t.Fatalf("LOOPGATE_REQUIRE_BPF=1 but %s", why)
	}
	t.Skip(why)
}

// treeServers are the servers the script runs: the test backend, and
// Python's http.server when python3 is on PATH (a runtime whose process
// loopgate did not build).
func treeServers(t *testing.T) map[string][2]string {
	servers := map[string][2]string{"testbackend": {loopgatetest.Program(t, backendPkg), ""}}
	if py, err := exec.LookPath("python3"); err == nil {
		servers["python3"] = [2]string{py, "-m http.server %ASPNETCORE_PORT% --bind 127.0.0.1"}
	}
	return servers
}

// treeApp writes the script and a web.config that runs it with server,
// and returns the app directory and the pid file.
func treeApp(t *testing.T, server [2]string, shutdownTimeLimit int) (dir, pidFile string) {
	t.Helper()
	dir = t.TempDir()
	pidFile = filepath.Join(dir, "pids")
	if err := os.WriteFile(filepath.Join(dir, "tree.sh"), []byte(treeScript), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTreeConfig(t, dir, server, shutdownTimeLimit)
	return dir, pidFile
}

func writeTreeConfig(t *testing.T, dir string, server [2]string, shutdownTimeLimit int) {
	t.Helper()
	cfg := fmt.Sprintf(`<configuration><system.webServer>
  <aspNetCore processPath="./tree.sh" arguments=%q shutdownTimeLimit="%d" startupTimeLimit="20">
    <environmentVariables>
      <environmentVariable name="SERVER" value=%q />
      <environmentVariable name="PIDFILE" value=%q />
    </environmentVariables>
  </aspNetCore>
</system.webServer></configuration>
`, server[1], shutdownTimeLimit, server[0], filepath.Join(dir, "pids"))
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// treePIDs waits (bounded) until the script has written all four pids
// after the first skip lines, and returns them; each is checked alive and
// killed at cleanup if it outlives the test.
func treePIDs(t *testing.T, pidFile string, skip int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(pidFile)
		lines := strings.Fields(string(data))
		if len(lines) >= skip+4 {
			var pids []int
			for _, l := range lines[skip : skip+4] {
				pid, err := strconv.Atoi(l)
				if err != nil {
					t.Fatalf("pid file: %q", data)
				}
				pids = append(pids, pid)
			}
			loopgatetest.KillAtCleanup(t, pids...)
			for _, pid := range pids {
				if !loopgatetest.Alive(pid) {
					t.Fatalf("process %d of the tree %v is not running", pid, pids)
				}
			}
			// The second leaves the process group (setsid) just after the
			// fork; until then a process-group kill would still get it.
			for {
				if ps, err := readProc(pids[1]); err == nil && ps.pgid == pids[1] {
					return pids
				}
				if time.Now().After(deadline) {
					t.Fatalf("process %d never left the backend's process group", pids[1])
				}
				time.Sleep(time.Millisecond)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tree script wrote %q", data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// containmentCgroup returns the cgroup loopgate logged, failing unless the
// containment is a cgroup with a keeper.
func containmentCgroup(t *testing.T, l *loopgatetest.Process) string {
	t.Helper()
	ev := l.WaitLog(5*time.Second, func(x loopgatetest.Line) bool { return x.Str("event") == "containment" })
	if ev == nil || ev.Str("mode") != "cgroup" || ev.Str("cgroup") == "" {
		t.Fatalf("containment log event %v, want mode cgroup", ev)
	}
	return ev.Str("cgroup")
}

// waitGone waits up to timeout for path not to exist.
func waitGone(t *testing.T, timeout time.Duration, path string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists after %v", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestContainmentLoopgateSIGKILL: when loopgate is SIGKILLed, no process of
// a backend's tree outlives it by more than 2 s, not even one that left
// the backend's process group and session, and loopgate's cgroup goes too.
// (Before containment, Pdeathsig killed only the direct child.)
func TestContainmentLoopgateSIGKILL(t *testing.T) {
	requireContainment(t)
	for name, server := range treeServers(t) {
		t.Run("server="+name, func(t *testing.T) {
			dir, pidFile := treeApp(t, server, 2)
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}})
			cg := containmentCgroup(t, l)
			if code, _, err := get(client(t, 20*time.Second), l.URL("/")); err != nil || code != 200 {
				t.Fatalf("GET /: %d %v", code, err)
			}
			pids := treePIDs(t, pidFile, 0)
			began := time.Now()
			l.Kill()
			loopgatetest.WaitDead(t, 2*time.Second-time.Since(began), pids...)
			t.Logf("tree %v gone %v after loopgate's SIGKILL", pids, time.Since(began).Round(time.Millisecond))
			waitGone(t, 5*time.Second, cg)
		})
	}
}

// TestContainmentRecycleAndStop: a recycle (web.config changed) stops the
// old backend's whole tree, and loopgate's graceful stop the new one's,
// including the process that left the process group.
func TestContainmentRecycleAndStop(t *testing.T) {
	requireContainment(t)
	for name, server := range treeServers(t) {
		t.Run("server="+name, func(t *testing.T) {
			dir, pidFile := treeApp(t, server, 2)
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}})
			cg := containmentCgroup(t, l)
			c := client(t, 20*time.Second)
			if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
				t.Fatalf("GET /: %d %v", code, err)
			}
			old := treePIDs(t, pidFile, 0)

			writeTreeConfig(t, dir, server, 3)
			l.Signal(syscall.SIGHUP)
			// The new tree is ready before the old one is stopped: at most
			// shutdownTimeLimit (2 s) for the graceful stop, then SIGKILL.
			hup := time.Now()
			next := treePIDs(t, pidFile, 4)
			t.Logf("new tree after %v", time.Since(hup))
			loopgatetest.WaitDead(t, 10*time.Second, old...)
			t.Logf("old tree gone after %v", time.Since(hup))
			for _, pid := range next {
				if !loopgatetest.Alive(pid) {
					t.Fatalf("process %d of the new tree %v died with the old one", pid, next)
				}
			}
			if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
				t.Fatalf("GET / after the recycle: %d %v", code, err)
			}

			term := time.Now()
			l.Signal(syscall.SIGTERM)
			if code := l.Wait(20 * time.Second); code != 0 {
				t.Errorf("exit status %d after SIGTERM", code)
			}
			t.Logf("stopped after %v", time.Since(term))
			loopgatetest.WaitDead(t, time.Second, next...)
			waitGone(t, time.Second, cg)
		})
	}
}

// TestContainmentUsage: with cgroups, /status and /metrics carry each app's
// CPU time and memory, and the CPU counter keeps what a recycled process
// used after its cgroup is gone.
func TestContainmentUsage(t *testing.T) {
	requireContainment(t)
	dir := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}})
	containmentCgroup(t, l)
	c := client(t, 20*time.Second)
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Fatalf("GET /: %d %v", code, err)
	}
	old := l.WaitReady(t, 1, 10*time.Second)
	loopgatetest.KillAtCleanup(t, old...)
	u := l.Status(t).Apps[0].Usage
	if u == nil || u.MemoryBytes < 1<<20 || u.CPUSeconds <= 0 {
		t.Fatalf("/status usage %+v, want some CPU time and at least 1 MiB", u)
	}
	mem := metric(t, l, `loopgate_app_memory_bytes{app="/"}`)
	cpu := metric(t, l, `loopgate_app_cpu_seconds_total{app="/"}`)
	t.Logf("one test backend: %.1f MiB, %.3f s of CPU (/status %+v)", mem/(1<<20), cpu, *u)
	if mem < 1<<20 || cpu <= 0 {
		t.Errorf("metrics: memory %v bytes, CPU %v s", mem, cpu)
	}

	writeConfig(t, dir, `rapidFailsPerMinute="9"`, nil)
	l.Signal(syscall.SIGHUP)
	loopgatetest.WaitDead(t, 10*time.Second, old...)
	if after := metric(t, l, `loopgate_app_cpu_seconds_total{app="/"}`); after < cpu {
		t.Errorf("CPU time went from %v s to %v s after a recycle: the old process's share was lost", cpu, after)
	}
}

// keeperPID is the pid of the keeper of loopgate's cgroup cg (its
// environment names cg), failing t if none runs.
func keeperPID(t *testing.T, cg string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !loopgatetest.IsKeeper(pid) {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		for _, kv := range strings.Split(string(env), "\x00") {
			if kv == "LOOPGATE_CGROUP_KEEPER="+cg {
				return pid
			}
		}
	}
	t.Fatalf("no keeper of %s runs", cg)
	return 0
}

// TestContainmentSweepsGoneLoopgate: a loopgate SIGKILLed together with
// its keeper leaves its cgroup and the backend processes that Pdeathsig
// does not reach; the next loopgate started in the same cgroup kills them
// and removes the cgroup, and leaves alone the cgroup of a loopgate that
// still runs beside it.
func TestContainmentSweepsGoneLoopgate(t *testing.T) {
	requireContainment(t)
	server := treeServers(t)["testbackend"]
	liveDir, livePIDFile := treeApp(t, server, 2)
	live := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", liveDir}})
	liveCG := containmentCgroup(t, live)
	c := client(t, 20*time.Second)
	if code, _, err := get(c, live.URL("/")); err != nil || code != 200 {
		t.Fatalf("GET / (running loopgate): %d %v", code, err)
	}
	livePIDs := treePIDs(t, livePIDFile, 0)

	goneDir, gonePIDFile := treeApp(t, server, 2)
	gone := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", goneDir}})
	goneCG := containmentCgroup(t, gone)
	if code, _, err := get(c, gone.URL("/")); err != nil || code != 200 {
		t.Fatalf("GET /: %d %v", code, err)
	}
	gonePIDs := treePIDs(t, gonePIDFile, 0)
	keeper := keeperPID(t, goneCG)
	// Stopped, loopgate cannot start a new keeper before its own SIGKILL.
	gone.Signal(syscall.SIGSTOP)
	if err := syscall.Kill(keeper, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone.Kill()
	loopgatetest.WaitDead(t, 5*time.Second, keeper)
	time.Sleep(500 * time.Millisecond)
	var left []int
	for _, pid := range gonePIDs {
		if loopgatetest.Alive(pid) {
			left = append(left, pid)
		}
	}
	if len(left) == 0 {
		t.Fatalf("no process of %v outlived loopgate and its keeper: nothing to sweep", gonePIDs)
	}
	if _, err := os.Stat(goneCG); err != nil {
		t.Fatalf("the gone loopgate's cgroup: %v", err)
	}
	t.Logf("left behind: %s with %v", goneCG, left)

	began := time.Now()
	next := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", appDir(t, "", nil)}})
	loopgatetest.WaitDead(t, 5*time.Second, left...)
	waitGone(t, 5*time.Second, goneCG)
	t.Logf("the next loopgate's start killed %v and removed %s within %v", left, goneCG, time.Since(began).Round(time.Millisecond))
	ev := next.WaitLog(5*time.Second, func(x loopgatetest.Line) bool {
		return x.Str("event") == "cgroup_swept" && x.Str("swept") == goneCG
	})
	if ev == nil || ev["killed"] != float64(len(left)) {
		t.Errorf("cgroup_swept log line %v, want %s with %d killed", ev, goneCG, len(left))
	}
	for _, l := range next.Lines() {
		if l.Str("event") == "cgroup_swept" && l.Str("swept") == liveCG {
			t.Errorf("the running loopgate's cgroup was swept: %v", l)
		}
	}
	for _, pid := range livePIDs {
		if !loopgatetest.Alive(pid) {
			t.Errorf("process %d of the running loopgate's backend died", pid)
		}
	}
	if code, _, err := get(c, live.URL("/")); err != nil || code != 200 {
		t.Errorf("GET / (running loopgate) after the sweep: %d %v", code, err)
	}
}
