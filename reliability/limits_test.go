package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// limitsUnavailable is the start error of an app whose memoryLimit or
// cpuLimit cannot be enforced here; "" when the app started.
func limitsStart(t *testing.T, l *loopgatetest.Process) (code int, startError string) {
	t.Helper()
	code, _, err := get(client(t, 20*time.Second), l.URL("/"))
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	return code, l.Status(t).Apps[0].LastStartError
}

// limitsEnforceable says whether this host can enforce memoryLimit: its
// cgroup v2 hierarchy offers the memory controller, or a cgroup v1
// hierarchy has it (hybrid hosts, as CI's).
func limitsEnforceable(mnt string) bool {
	ctrls, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
	return strings.Contains(" "+strings.TrimSpace(string(ctrls))+" ", " memory ") || v1Mount("memory") != ""
}

// v1Mount is the mount point of the cgroup v1 hierarchy of controller c,
// "" if none.
func v1Mount(c string) string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(post), strings.Fields(pre)
		if ok && len(f) >= 3 && f[0] == "cgroup" && len(g) >= 5 && slices.Contains(strings.Split(f[2], ","), c) {
			return g[4]
		}
	}
	return ""
}

// limitFile reads a limit in force for backend pid, whose app's cgroup is
// appCG: the cgroup v2 file there where it exists, else the cgroup v1 file
// of controller c in the pid's cgroup of that hierarchy, which must be the
// app's mirror (<loopgate's v1 cgroup>/loopgate-<pid>/root). It returns
// the file read.
func limitFile(t *testing.T, appCG, v2file, c, v1file string, pid int) (path, value string) {
	t.Helper()
	path = filepath.Join(appCG, v2file)
	if _, err := os.Stat(path); err != nil {
		procCG, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		for _, line := range strings.Split(string(procCG), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), c) {
				path = filepath.Join(v1Mount(c), parts[2], v1file)
			}
		}
		mirror := filepath.Join(filepath.Base(filepath.Dir(appCG)), filepath.Base(appCG))
		if !strings.HasSuffix(filepath.Dir(path), "/"+mirror) {
			t.Errorf("backend %d is in %s, not in its app's cgroup v1 %s mirror (…/%s)", pid, filepath.Dir(path), c, mirror)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading a limit: %v", err)
	}
	return path, strings.TrimSpace(string(b))
}

// TestLimits: memoryLimit and cpuLimit go on the app's cgroup, above its
// processes' (cpu.max "150000 100000" for 150), or, on a hybrid host
// whose memory and cpu controllers are bound to cgroup v1 (CI's), on the
// app's mirror there (memory.limit_in_bytes, cpu.cfs_quota_us), and an
// app allocating past its 32M is OOM-killed: a crash, logged with
// "oom_kill":true, the client's request a 502.3, the app restarted. A
// SIGKILLed loopgate's keeper removes the mirrors. Only on a host with no
// memory controller at all does the app not start, and the start error
// says what is missing: that message is what is tested there.
func TestLimits(t *testing.T) {
	requireContainment(t)
	dir := settingsApp(t, `rapidFailsPerMinute="100"`, map[string]string{"memoryLimit": "32M", "cpuLimit": "150"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}})
	cg := containmentCgroup(t, l)
	mnt := filepath.Dir(cg)
	code, startErr := limitsStart(t, l)
	if code != 200 {
		t.Logf("limits cannot be enforced here: %d, start error %q", code, startErr)
		if limitsEnforceable(mnt) {
			t.Fatalf("GET / of an app with memoryLimit: %d, start error %q; want it started on this host", code, startErr)
		}
		if code != 502 || !strings.Contains(startErr, "cannot enforce the app's resource limits: ") {
			t.Fatalf("GET / of an app whose limits cannot be enforced: %d, start error %q", code, startErr)
		}
		rootCtrls, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
		want := "memoryLimit needs the cgroup v2 memory controller, which this host does not offer in its cgroup v2 hierarchy (" +
			filepath.Join(mnt, "cgroup.controllers") + ": " + `"` + strings.TrimSpace(string(rootCtrls)) + `"` + "), and no cgroup v1 hierarchy of it is mounted"
		if !strings.Contains(startErr, want) {
			t.Errorf("start error %q\nlacks %q", startErr, want)
		}
		failed := l.WaitLog(time.Second, func(x loopgatetest.Line) bool { return x.Str("event") == "start_failed" })
		if failed == nil || !strings.Contains(failed.Str("error"), want) || failed["attempts"] != float64(1) {
			t.Errorf("start_failed log line %v: want the reason, after one attempt", failed)
		}
		early := l.WaitLog(0, func(x loopgatetest.Line) bool { return x.Str("event") == "limits_unavailable" })
		if early == nil || !strings.Contains(early.Str("error"), want) {
			t.Errorf("no limits_unavailable line with the reason at start-up: %v", early)
		}
		if pids := l.ReadyPIDs(t); len(pids) != 0 {
			t.Errorf("processes %v run without their limits", pids)
		}
		return
	}
	pids := l.WaitReady(t, 1, 10*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	appCG := filepath.Join(cg, "root")
	memFile, mem := limitFile(t, appCG, "memory.max", "memory", "memory.limit_in_bytes", pids[0])
	cpuFile, cpu := limitFile(t, appCG, "cpu.max", "cpu", "cpu.cfs_quota_us", pids[0])
	t.Logf("%s: %s; %s: %s", memFile, mem, cpuFile, cpu)
	if mem != "33554432" {
		t.Errorf("%s: %q, want 33554432", memFile, mem)
	}
	if cpu != "150000 100000" && cpu != "150000" {
		t.Errorf("%s: %q, want 150 %% of a 100 ms period", cpuFile, cpu)
	}
	// Past the limit: the kernel kills the backend, a crash.
	c := client(t, 30*time.Second)
	code, body, _ := get(c, l.URL("/alloc?mb=100"))
	if code != 502 || !strings.Contains(body, "HTTP Error 502.3") {
		t.Errorf("GET /alloc?mb=100 with memoryLimit 32M: %d %q, want 502.3", code, body)
	}
	crash := l.WaitLog(10*time.Second, func(x loopgatetest.Line) bool { return x.Str("event") == "crash" })
	if crash == nil || crash["oom_kill"] != true || !strings.Contains(crash.Str("exit_status"), "killed") ||
		!strings.Contains(crash.Str("exit_status"), "(out of memory: memoryLimit)") {
		t.Fatalf("crash log line %v, want an OOM kill", crash)
	}
	t.Logf("crash: %s", crash.Str("exit_status"))
	loopgatetest.WaitDead(t, 5*time.Second, pids...)
	// The OOM kill is the app's own doing (its allocations met the
	// limit): the GET is not sent again to the restarted process, which
	// it would kill too. One crash.
	access := l.WaitLog(5*time.Second, func(x loopgatetest.Line) bool {
		return x.Str("event") == "access" && strings.HasPrefix(x.Str("path"), "/alloc")
	})
	if access == nil || access["retried"] == true {
		t.Errorf("access line of the OOM-killed GET %v: want one, not retried", access)
	}
	next := l.WaitReady(t, 1, 20*time.Second)
	if st := l.Status(t).Apps[0]; st.Crashes != 1 {
		t.Errorf("%d crashes counted, want 1", st.Crashes)
	}
	if next[0] == pids[0] {
		t.Errorf("no new process after the OOM kill")
	}
	loopgatetest.KillAtCleanup(t, next...)
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Errorf("GET / after the restart: %d %v", code, err)
	}
	if memFile != filepath.Join(appCG, "memory.max") {
		// The mirrors go with loopgate, SIGKILLed: its keeper removes them.
		mirrors := []string{filepath.Dir(filepath.Dir(memFile)), filepath.Dir(filepath.Dir(cpuFile))}
		l.Kill()
		for _, m := range mirrors {
			waitGone(t, 5*time.Second, m)
		}
	}
}

// spinScript is an app that keeps one CPU busy: a shell loop beside the
// test backend ($SERVER), both in the app's cgroup.
const spinScript = `#!/bin/sh
while :; do :; done &
exec "$SERVER"
`

// TestCPULimit: an app that keeps a CPU busy uses about its cpuLimit of
// 20 % of one CPU over 2 s (at most 60 %, a margin for a loaded machine)
// and the kernel throttles it, on cgroup v2 or, on a hybrid host, on
// cgroup v1.
func TestCPULimit(t *testing.T) {
	requireContainment(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spin.sh"), []byte(spinScript), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`<configuration><system.webServer>
  <aspNetCore processPath="./spin.sh" shutdownTimeLimit="1" startupTimeLimit="20">
    <environmentVariables><environmentVariable name="SERVER" value=%q /></environmentVariables>
    <handlerSettings><handlerSetting name="cpuLimit" value="20" /></handlerSettings>
  </aspNetCore>
</system.webServer></configuration>
`, loopgatetest.Program(t, backendPkg))
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}})
	cg := containmentCgroup(t, l)
	if code, startErr := limitsStart(t, l); code != 200 {
		t.Fatalf("GET / of an app with cpuLimit 20: %d, start error %q", code, startErr)
	}
	pids := l.WaitReady(t, 1, 10*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	quotaFile, quota := limitFile(t, filepath.Join(cg, "root"), "cpu.max", "cpu", "cpu.cfs_quota_us", pids[0])
	if quota != "20000 100000" && quota != "20000" {
		t.Errorf("%s: %q, want 20 %% of a 100 ms period", quotaFile, quota)
	}
	throttled := func() int {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(quotaFile), "cpu.stat"))
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "nr_throttled "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Fatalf("no nr_throttled in %s/cpu.stat: %q", filepath.Dir(quotaFile), b)
		return 0
	}
	cpuSeconds := func() float64 {
		u := l.Status(t).Apps[0].Usage
		if u == nil {
			t.Fatal("/status has no usage")
		}
		return u.CPUSeconds
	}
	time.Sleep(500 * time.Millisecond) // the loop is running
	began, before, periods := time.Now(), cpuSeconds(), throttled()
	time.Sleep(2 * time.Second)
	share := (cpuSeconds() - before) / time.Since(began).Seconds()
	periods = throttled() - periods
	t.Logf("app with cpuLimit 20 used %.0f %% of one CPU over 2 s, throttled in %d periods of 100 ms", share*100, periods)
	// On a loaded machine an unlimited loop may get under 60 % too: the
	// kernel's own count says whether the quota held it back.
	if periods < 5 {
		t.Errorf("the app was throttled in %d periods of 2 s, want most of the 20 (the quota is not enforced)", periods)
	}
	if share >= 0.6 {
		t.Errorf("app with cpuLimit 20 used %.0f %% of one CPU, want about 20 %% (under 60 %%)", share*100)
	}
	if share < 0.02 {
		t.Errorf("app used %.1f %% of one CPU: is its loop running?", share*100)
	}
}
