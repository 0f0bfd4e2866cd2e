package reliability

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestPID1ReapsOrphans runs loopgate as PID 1 of a new PID namespace, as in
// a container started without --init, and has the backend leave an orphan
// behind that exits 200 ms later. The orphan is re-parented to PID 1; it
// must be reaped, not left a zombie, and loopgate must serve and stop as
// usual; and it must leave alone the cgroup of a loopgate beside it, whose
// pid it cannot see.
func TestPID1ReapsOrphans(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare(1)")
	}
	if out, err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a PID namespace here: %v %s", err, out)
	}
	dir := appDir(t, "", nil)
	// A loopgate beside it in the same cgroup, which the namespaced one
	// cannot see in its /proc: its cgroup must not be swept as left.
	beside := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", appDir(t, "", nil)}})
	if code, _, err := get(client(t, 10*time.Second), beside.URL("/")); err != nil || code != 200 {
		t.Fatalf("loopgate beside: %d %v", code, err)
	}
	besidePIDs := beside.WaitReady(t, 1, 10*time.Second)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}, Wrap: []string{"unshare", "--pid", "--fork", "--mount-proc", "--kill-child"}})
	if swept := l.WaitLog(0, func(x loopgatetest.Line) bool { return x.Str("event") == "cgroup_swept" }); swept != nil {
		t.Errorf("loopgate in a PID namespace swept a cgroup: %v", swept)
	}
	if !loopgatetest.Alive(besidePIDs[0]) {
		t.Errorf("the backend of the loopgate beside (pid %d) was killed", besidePIDs[0])
	}
	init := childOf(t, l.PID())
	c := client(t, 10*time.Second)
	for range 5 {
		if code, body, err := get(c, l.URL("/orphan")); err != nil || code != 200 {
			t.Fatalf("/orphan: %d %q %v", code, body, err)
		}
	}
	time.Sleep(time.Second) // the orphans' sleeps end after 200 ms
	var zombies []int
	for _, pid := range childrenOf(init) {
		if ps, err := readProc(pid); err == nil && ps.state == 'Z' {
			zombies = append(zombies, pid)
		}
	}
	if len(zombies) > 0 {
		t.Errorf("PID 1 (host pid %d) has %d zombie children: %v", init, len(zombies), zombies)
	}
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Errorf("serving as PID 1: %d %v", code, err)
	}

	// SIGTERM to PID 1 reaches the serving loopgate, which drains; PID 1
	// then exits with its status, and the namespace with it.
	if err := syscall.Kill(init, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := l.Wait(20 * time.Second); code != 0 {
		t.Errorf("loopgate as PID 1 after SIGTERM: exit status %d, want a clean exit", code)
	}
	if l.WaitLog(0, func(line loopgatetest.Line) bool { return line.Str("event") == "stopped" }) == nil {
		t.Errorf("no stopped event: the SIGTERM was not forwarded to the serving process")
	}
	loopgatetest.WaitDead(t, 5*time.Second, init)
}

// childOf returns the one child of pid, waiting for it briefly.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if kids := childrenOf(pid); len(kids) == 1 {
			return kids[0]
		}
	}
	t.Fatalf("process %d has no single child", pid)
	return 0
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if ps, err := readProc(p); err == nil && ps.ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids
}
