package reliability

import (
	"os"
	"path/filepath"
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

// TestLimits: memoryLimit and cpuLimit go on the app's cgroup, above its
// processes' (cpu.max "150000 100000" for 150), and an OOM kill at the
// limit counts as a crash, logged as one. On a host whose cgroup v2
// hierarchy cannot give loopgate the memory and cpu controllers (they are
// bound to cgroup v1, or not delegated), the app does not start, and the
// start error says what is missing: that message is what is tested there.
func TestLimits(t *testing.T) {
	requireContainment(t)
	dir := settingsApp(t, `rapidFailsPerMinute="100"`, map[string]string{"memoryLimit": "96M", "cpuLimit": "150"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}})
	cg := containmentCgroup(t, l)
	code, startErr := limitsStart(t, l)
	if code != 200 {
		// No controllers here: the message names what is missing.
		t.Logf("limits cannot be enforced here: %d, start error %q", code, startErr)
		if code != 502 || !strings.Contains(startErr, "cannot enforce the app's resource limits: ") {
			t.Fatalf("GET / of an app whose limits cannot be enforced: %d, start error %q", code, startErr)
		}
		mnt := filepath.Dir(cg)
		rootCtrls, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
		var want string
		if !strings.Contains(string(rootCtrls), "memory") {
			want = "memoryLimit needs the cgroup v2 memory controller, which this host does not offer in its cgroup v2 hierarchy (" +
				filepath.Join(mnt, "cgroup.controllers") + ": " + `"` + strings.TrimSpace(string(rootCtrls)) + `"` + "): it is bound to a cgroup v1 hierarchy or disabled"
		} else {
			want = "memoryLimit needs the memory controller"
		}
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
	// The controllers work here.
	pids := l.WaitReady(t, 1, 10*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	appCG := filepath.Join(cg, "root")
	for file, want := range map[string]string{"memory.max": "100663296", "cpu.max": "150000 100000"} {
		b, err := os.ReadFile(filepath.Join(appCG, file))
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s/%s: %q %v, want %q", appCG, file, b, err, want)
		}
	}
	// Past the limit: the kernel kills the backend, a crash.
	c := client(t, 30*time.Second)
	code, body, _ := get(c, l.URL("/alloc?mb=400"))
	t.Logf("GET /alloc?mb=400 with memoryLimit 96M: %d %q", code, body)
	crash := l.WaitLog(10*time.Second, func(x loopgatetest.Line) bool { return x.Str("event") == "crash" })
	if crash == nil || crash["oom_kill"] != true || !strings.Contains(crash.Str("exit_status"), "killed") {
		t.Fatalf("crash log line %v, want an OOM kill", crash)
	}
	loopgatetest.WaitDead(t, 5*time.Second, pids...)
	if st := l.Status(t).Apps[0]; st.Crashes != 1 {
		t.Errorf("%d crashes counted, want 1", st.Crashes)
	}
	if next := l.WaitReady(t, 1, 20*time.Second); next[0] == pids[0] {
		t.Errorf("no new process after the OOM kill")
	}
}
