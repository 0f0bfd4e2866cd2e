package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree lays out loopgate's own cgroup and loopgate-1 below it as plain
// files, with ownCtrls in the own cgroup's cgroup.controllers.
func fakeTree(t *testing.T, ownCtrls string) (*Tree, string) {
	t.Helper()
	own := t.TempDir()
	dir := filepath.Join(own, "loopgate-1")
	os.Mkdir(dir, 0o755)
	for f, v := range map[string]string{
		filepath.Join(own, "cgroup.controllers"):     ownCtrls,
		filepath.Join(own, "cgroup.subtree_control"): "",
		filepath.Join(dir, "cgroup.controllers"):     "",
		filepath.Join(dir, "cgroup.subtree_control"): "",
	} {
		os.WriteFile(f, []byte(v), 0o644)
	}
	return &Tree{dir: dir}, own
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSetLimits: the limits go on the app's cgroup with the kernel's
// syntax, after the controllers are enabled down from loopgate's own
// cgroup; a limit set to 0 is lifted.
func TestSetLimits(t *testing.T) {
	tr, own := fakeTree(t, "cpuset cpu io memory pids")
	if err := tr.SetLimits("/api", Limits{MemoryMax: 512 << 20, CPUPercent: 150}); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(tr.dir, "app_api")
	if got := read(t, filepath.Join(app, "memory.max")); got != "536870912" {
		t.Errorf("memory.max %q", got)
	}
	if got := read(t, filepath.Join(app, "cpu.max")); got != "150000 100000" {
		t.Errorf("cpu.max %q", got)
	}
	// A plain file keeps the last write: +cpu came after +memory.
	if got := read(t, filepath.Join(own, "cgroup.subtree_control")); got != "+cpu" {
		t.Errorf("own cgroup.subtree_control last written %q", got)
	}
	if got := read(t, filepath.Join(tr.dir, "cgroup.subtree_control")); got != "+cpu" {
		t.Errorf("loopgate's cgroup.subtree_control last written %q", got)
	}
	if err := tr.SetLimits("/api", Limits{CPUPercent: 50}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(app, "memory.max")); got != "max" {
		t.Errorf("memory.max after the limit went: %q", got)
	}
	if got := read(t, filepath.Join(app, "cpu.max")); got != "50000 100000" {
		t.Errorf("cpu.max %q", got)
	}
}

// TestSetLimitsMissing: a controller that loopgate's own cgroup does not
// have, or no cgroup at all, is an ErrController naming the setting; no
// limit wanted is never an error.
func TestSetLimitsMissing(t *testing.T) {
	tr, _ := fakeTree(t, "cpuset io pids")
	err := tr.SetLimits("/", Limits{MemoryMax: 64 << 20})
	if !errors.Is(err, ErrController) || !strings.Contains(err.Error(), "memoryLimit needs ") {
		t.Errorf("memory missing: %v", err)
	}
	if err := tr.SetLimits("/", Limits{}); err != nil {
		t.Errorf("no limits: %v", err)
	}
	var none *Tree
	if err := none.SetLimits("/", Limits{CPUPercent: 10}); !errors.Is(err, ErrController) || !strings.Contains(err.Error(), "cpuLimit needs a cgroup for the app, and loopgate has none") {
		t.Errorf("no tree: %v", err)
	}
	if err := none.SetLimits("/", Limits{}); err != nil {
		t.Errorf("no tree, no limits: %v", err)
	}
}
