package reliability

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bpf/bpftest"
	"github.com/loopgate/loopgate/internal/cgroup"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestAccelOnlyLoopgatesCgroup starts loopgate in a cgroup of its own
// (below the cgroup v2 mount, as systemd's loopgate.service would be) and
// checks that the sockops program is attached there, not at the mount's
// root: /status names that cgroup, loopgate's forwarding to its backend
// (which runs in a cgroup below loopgate's) is redirected, and the test
// process, which is outside loopgate's cgroup, connecting to the same
// backend port directly moves no sockmap counter.
func TestAccelOnlyLoopgatesCgroup(t *testing.T) {
	bpftest.Require(t)
	mnt, err := cgroup.Mount()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, fmt.Sprintf("loopgate-accel-scope-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		if os.Getenv("LOOPGATE_REQUIRE_BPF") == "1" {
			t.Fatalf("LOOPGATE_REQUIRE_BPF=1 but creating a cgroup failed: %v", err)
		}
		t.Skipf("creating a cgroup: %v", err)
	}
	t.Cleanup(func() { removeCgroupTree(t, dir) }) // after loopgate's kill (cleanups run in reverse)

	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "on", appDir(t, `processesPerApplication="1"`, nil)}, Cgroup: dir})
	acc := l.Status(t).Acceleration
	if !acc.Active || acc.Cgroup != dir || acc.CgroupNote != "" {
		t.Fatalf("/status acceleration %+v: want active, cgroup %s, no note", acc, dir)
	}
	if line := l.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "accel_on" }); line == nil || line.Str("cgroup") != dir {
		t.Errorf("accel_on log line %v: want cgroup %s", line, dir)
	}

	c := client(t, 10*time.Second)
	get20 := func(url string, want int) {
		t.Helper()
		for i := range 20 {
			if code, body, err := get(c, url); err != nil || code != want {
				t.Fatalf("GET %s #%d: %d %q %v; want %d", url, i, code, body, err, want)
			}
		}
		c.CloseIdleConnections()
	}
	get20(l.URL("/"), 200)
	st := l.Status(t)
	if len(st.Apps) != 1 || len(st.Apps[0].Processes) != 1 || st.Apps[0].Processes[0].Port == 0 {
		t.Fatalf("/status apps %+v: want one app with one process", st.Apps)
	}
	port := st.Apps[0].Processes[0].Port
	before := st.Acceleration
	t.Logf("through loopgate (20 GETs): %d messages redirected, %d passed", before.Redirected, before.Passed)
	if before.Redirected == 0 {
		t.Errorf("loopgate's own forwarding was not redirected: %+v", before)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Apps[0].Processes[0].PID))
	if err != nil || !strings.Contains(string(b), "0::"+strings.TrimPrefix(dir, mnt)+"/") {
		t.Errorf("backend's cgroup %q (%v): want one below %s", b, err, dir)
	}

	// The same backend, straight from the test process (outside); it
	// answers 400 without loopgate's pairing token, which is enough bytes
	// both ways.
	get20(fmt.Sprintf("http://127.0.0.1:%d/", port), 400)
	after := l.Status(t).Acceleration
	t.Logf("straight to the backend from outside (20 GETs): %d messages redirected, %d passed", after.Redirected-before.Redirected, after.Passed-before.Passed)
	if after.Redirected != before.Redirected || after.Passed != before.Passed {
		t.Errorf("a client outside loopgate's cgroup moved the sockmap counters: redirected %d -> %d, passed %d -> %d",
			before.Redirected, after.Redirected, before.Passed, after.Passed)
	}

	// And loopgate still is.
	get20(l.URL("/"), 200)
	if again := l.Status(t).Acceleration; again.Redirected <= after.Redirected {
		t.Errorf("loopgate's forwarding after the outside client: redirected %d -> %d", after.Redirected, again.Redirected)
	}
}

// removeCgroupTree kills whatever still runs in dir's subtree and removes
// it, deepest first, within 5 s.
func removeCgroupTree(t *testing.T, dir string) {
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var dirs []string
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.Reverse(dirs)
		var last error
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				last = err
			}
		}
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("removing cgroup %s: %v", dir, last)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
