package loopgatetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Alive reports whether process pid exists and is not a zombie.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised command name, is the state.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// WaitDead waits up to timeout until none of pids is alive, failing t if
// some still are.
func WaitDead(t testing.TB, timeout time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var live []int
		for _, p := range pids {
			if Alive(p) {
				live = append(live, p)
			}
		}
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still alive after %v", live, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// KillAtCleanup SIGKILLs those of pids that outlive t: a backend the test
// learned about must never outlive it, even when loopgate failed to stop
// it.
func KillAtCleanup(t testing.TB, pids ...int) {
	t.Cleanup(func() {
		for _, p := range pids {
			if Alive(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
}

// Running lists the live processes whose executable is exe.
func Running(exe string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe")); err == nil && target == exe && Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
