package loopgatetest

import (
	"errors"
	"fmt"
	"io/fs"
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

// IsKeeper reports whether pid is a loopgate keeper (its comm is
// "loopgate-keeper"), which runs loopgate's executable too: a test that
// SIGKILLs every process of that executable must spare it, or the
// keeper dies with loopgate and cannot remove loopgate's cgroup.
func IsKeeper(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return err == nil && strings.TrimSpace(string(b)) == "loopgate-keeper"
}

// CgroupsLogged lists the cgroups (loopgate-<pid>) that the "containment"
// events of lines name.
func CgroupsLogged(lines []Line) []string {
	var dirs []string
	for _, l := range lines {
		if l.Str("event") == "containment" && l.Str("cgroup") != "" {
			dirs = append(dirs, l.Str("cgroup"))
		}
	}
	return dirs
}

// WaitCgroupGone fails t unless loopgate's cgroup dir (loopgate-<pid>) is
// gone within timeout: a loopgate removes it when it stops, and its keeper
// when loopgate is killed, however it ends. Call it after loopgate exited.
func WaitCgroupGone(t testing.TB, timeout time.Duration, dir string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			var left []string
			filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					left = append(left, path)
				}
				return nil
			})
			t.Errorf("loopgate's cgroup %s still exists %v after loopgate exited: %v", dir, timeout, left)
			// Not left behind for the next run: the empty ones go,
			// deepest first.
			for i := len(left) - 1; i >= 0; i-- {
				os.Remove(left[i])
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
