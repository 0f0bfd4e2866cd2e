package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Limits are the resource limits of one app: set on the app's cgroup
// (loopgate-<pid>/<app>), above the cgroups of its processes, so that they
// cover all of its processes together, as an IIS application pool's limits
// cover all of its worker processes.
type Limits struct {
	// MemoryMax is memory.max in bytes (the kernel reclaims, then
	// OOM-kills a process of the app past it); 0: none.
	MemoryMax int64
	// CPUPercent is cpu.max as a percentage of one CPU: 150 is
	// "150000 100000", one and a half CPUs' time per 100 ms period; 0:
	// none.
	CPUPercent int
}

// ErrController means a limit cannot be enforced: loopgate has no cgroup,
// or the controller the limit needs cannot be enabled for the apps'
// cgroups. The error says which, and what is missing.
var ErrController = errors.New("cannot enforce the app's resource limits")

// SetLimits sets l on app's cgroup (creating it), before the app's next
// process starts in it, enabling the memory or cpu controller for the
// apps' cgroups first where cgroup v2 allows it (in loopgate's cgroup's
// cgroup.subtree_control, and in its parent's when that is loopgate's own
// cgroup and may hand it down). A controller that this host's cgroup v2
// lacks and a cgroup v1 hierarchy has is set on the app's mirror there
// (v1.go), which the app's next processes start in. A limit that is 0 is lifted ("max") where
// it was set. It fails, wrapping ErrController, when a limit is wanted and
// cannot be enforced, saying what is missing.
func (t *Tree) SetLimits(app string, l Limits) error {
	var want []string
	if l.MemoryMax > 0 {
		want = append(want, "memory")
	}
	if l.CPUPercent > 0 {
		want = append(want, "cpu")
	}
	if t == nil || t.dir == "" {
		if len(want) == 0 {
			return nil
		}
		why := "loopgate runs without cgroup containment"
		if t != nil && t.why != "" {
			why = t.why
		}
		return fmt.Errorf("%w: %s needs a cgroup for the app, and loopgate has none (%s)", ErrController, limitNames(want), why)
	}
	appDir := filepath.Join(t.dir, groupName(app))
	if err := os.Mkdir(appDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating cgroup: %w", err)
	}
	// Where cgroup v2 lacks a controller that a cgroup v1 hierarchy has,
	// the limit goes there (v1.go).
	v1 := map[string]string{}
	for _, c := range v1Limited {
		if dir := t.v1Dir(c, app); dir != "" {
			v1[c] = dir
		}
	}
	for _, c := range want {
		if v1[c] != "" {
			continue
		}
		if err := t.enable(c); err != nil {
			return err
		}
	}
	mem, cpu := "max", "max 100000"
	if l.MemoryMax > 0 {
		mem = strconv.FormatInt(l.MemoryMax, 10)
	}
	if l.CPUPercent > 0 {
		cpu = strconv.Itoa(l.CPUPercent*1000) + " 100000"
	}
	inV1 := map[string]string{}
	for _, f := range []struct {
		c, file, value string
		wanted         bool
	}{{"memory", "memory.max", mem, l.MemoryMax > 0}, {"cpu", "cpu.max", cpu, l.CPUPercent > 0}} {
		if dir := v1[f.c]; dir != "" {
			if err := setV1(f.c, dir, l, f.wanted); err != nil {
				return err
			}
			if f.wanted {
				inV1[f.c] = dir
			}
			continue
		}
		p := filepath.Join(appDir, f.file)
		if !f.wanted {
			// Lift a limit an earlier configuration set, where there is one.
			if _, err := os.Stat(p); err == nil {
				_ = os.WriteFile(p, []byte(f.value), 0)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(f.value), 0); err != nil {
			return fmt.Errorf("%w: writing %q to %s: %v", ErrController, f.value, p, err)
		}
	}
	t.mu.Lock()
	if len(inV1) > 0 {
		t.v1Apps[app] = inV1
	} else {
		delete(t.v1Apps, app)
	}
	t.mu.Unlock()
	return nil
}

func limitNames(ctrls []string) string {
	var names []string
	for _, c := range ctrls {
		name, ok := map[string]string{"memory": "memoryLimit", "cpu": "cpuLimit"}[c]
		if !ok {
			name = "the " + c + " controller"
		}
		names = append(names, name)
	}
	return strings.Join(names, " and ")
}

// enable makes controller c available in the apps' cgroups: enabled in
// the cgroup.subtree_control of loopgate's cgroup (loopgate-<pid>), which
// needs it in that cgroup's cgroup.controllers, which needs it enabled in
// the subtree_control of loopgate's own cgroup, which needs loopgate out
// of it (moveToLeaf) unless it is the root.
func (t *Tree) enable(c string) error {
	setting := limitNames([]string{c})
	if words(filepath.Join(t.dir, "cgroup.subtree_control"), c) {
		return nil
	}
	own := filepath.Dir(t.dir)
	if !words(filepath.Join(t.dir, "cgroup.controllers"), c) {
		// loopgate's own cgroup must hand it down first.
		if !words(filepath.Join(own, "cgroup.controllers"), c) {
			return t.missing(c, setting, own)
		}
		// The root cgroup may hand controllers down while it holds
		// processes; any other may not: loopgate leaves it first.
		if mnt, _ := Mount(); own != filepath.Clean(mnt) {
			if err := t.moveToLeaf(own, setting, c); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(own, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return fmt.Errorf("%w: %s needs the %s controller in the apps' cgroups; loopgate's own cgroup %s has it "+
				"but cannot hand it down (writing +%s to its cgroup.subtree_control: %v); "+
				"run loopgate in a cgroup of its own (systemd: Delegate=yes), or leave %s out",
				ErrController, setting, c, own, c, err, setting)
		}
	}
	if err := os.WriteFile(filepath.Join(t.dir, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
		return fmt.Errorf("%w: %s: enabling the %s controller in %s/cgroup.subtree_control: %v", ErrController, setting, c, t.dir, err)
	}
	return nil
}

// missing explains a controller that loopgate's own cgroup does not have.
func (t *Tree) missing(c, setting, own string) error {
	mnt, _ := Mount()
	rootCtrls, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
	ownCtrls, _ := os.ReadFile(filepath.Join(own, "cgroup.controllers"))
	if mnt != "" && !slices.Contains(strings.Fields(string(rootCtrls)), c) {
		return fmt.Errorf("%w: %s needs the cgroup v2 %s controller, which this host does not offer in its cgroup v2 hierarchy "+
			"(%s/cgroup.controllers: %q), and no cgroup v1 hierarchy of it is mounted: it is disabled; a host booted with the unified "+
			"hierarchy (systemd.unified_cgroup_hierarchy=1) has it; or leave %s out",
			ErrController, setting, c, mnt, strings.TrimSpace(string(rootCtrls)), setting)
	}
	return fmt.Errorf("%w: %s needs the %s controller, which is not delegated to loopgate's cgroup %s "+
		"(its cgroup.controllers: %q): enable it in its parent's cgroup.subtree_control (systemd: Delegate=yes), or leave %s out",
		ErrController, setting, c, own, strings.TrimSpace(string(ownCtrls)), setting)
}

// words reports whether the space-separated file holds word.
func words(file, word string) bool {
	b, err := os.ReadFile(file)
	return err == nil && slices.Contains(strings.Fields(string(b)), word)
}

// OOMKills reads how many processes of app the kernel's OOM killer has
// killed in the app's cgroup (memory.events oom_kill, which counts the
// whole subtree; on cgroup v1, memory.oom_control's oom_kill of the app's
// mirror), and false where there is no such count (no cgroup, no memory
// controller).
func (t *Tree) OOMKills(app string) (uint64, bool) {
	if t == nil || t.dir == "" {
		return 0, false
	}
	b, err := os.ReadFile(filepath.Join(t.dir, groupName(app), "memory.events"))
	if err != nil {
		if dir := t.v1Dir("memory", app); dir != "" {
			_, n, ok := v1Memory(dir)
			return n, ok
		}
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
