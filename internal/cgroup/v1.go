package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// On a hybrid host (cgroup v2 mounted beside cgroup v1 hierarchies, as at
// /sys/fs/cgroup/unified) the memory and cpu controllers are often bound
// to cgroup v1, and the v2 hierarchy cannot offer them. There the apps'
// limits go on a mirror of the app's cgroup in the v1 hierarchy of the
// controller: <v1 mount>/<this process's cgroup there>/loopgate-<pid>/<app>
// (memory.limit_in_bytes; cpu.cfs_quota_us and cpu.cfs_period_us). Each
// backend process starts in it; the v2 tree still does the killing, and
// Close, the keeper and the sweep remove the mirrors.
//
// cgroup v1 has no CLONE_INTO_CGROUP, and moving a process after the fork
// would let whatever it forks first stay outside. So the thread that forks
// moves into the mirror first (v1 places threads one by one, and a child
// starts in its forking thread's cgroups) and back after the fork:
// Group.EnterThread.

// v1Limited are the controllers whose limits can go on cgroup v1.
var v1Limited = []string{"memory", "cpu"}

// v1Homes finds, for each of v1Limited bound to a mounted cgroup v1
// hierarchy, the absolute path of this process's cgroup there.
func v1Homes() map[string]string {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer mi.Close()
	cg, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	defer cg.Close()
	return parseV1Homes(mi, cg)
}

// parseV1Homes reads mountinfo for the cgroup v1 mounts of v1Limited (the
// controllers are among the super options after the " - cgroup <source> "
// part) and /proc/self/cgroup for this process's path in each.
func parseV1Homes(mountinfo, cgroup io.Reader) map[string]string {
	mounts := map[string]string{}
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f := strings.Fields(post)
		if !ok || len(f) < 3 || f[0] != "cgroup" || len(strings.Fields(pre)) < 5 {
			continue
		}
		// The root of the mount must be the hierarchy's root for the
		// path in /proc/self/cgroup to be found below it.
		if fields := strings.Fields(pre); fields[3] == "/" {
			for _, o := range strings.Split(f[2], ",") {
				if slices.Contains(v1Limited, o) {
					mounts[o] = unescapeMountinfo(fields[4])
				}
			}
		}
	}
	homes := map[string]string{}
	sc = bufio.NewScanner(cgroup)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || parts[1] == "" || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if mnt, ok := mounts[c]; ok {
				homes[c] = filepath.Join(mnt, parts[2])
			}
		}
	}
	return homes
}

// v2Offers reports whether the cgroup v2 hierarchy's root offers
// controller c.
func v2Offers(c string) bool {
	mnt, err := Mount()
	return err == nil && words(filepath.Join(mnt, "cgroup.controllers"), c)
}

// v1Dir is the mirror of app's cgroup in the v1 hierarchy of controller c:
// "" when the limit on c goes on cgroup v2 (or nowhere).
func (t *Tree) v1Dir(c, app string) string {
	home := t.v1[c]
	if home == "" || v2Offers(c) {
		return ""
	}
	return filepath.Join(home, filepath.Base(t.dir), groupName(app))
}

// setV1 writes limit l for controller c on the app's v1 mirror dir,
// creating it; with want false it lifts a limit set before, if the mirror
// exists.
func setV1(c, dir string, l Limits, want bool) error {
	if !want {
		if _, err := os.Stat(dir); err != nil {
			return nil
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %s: creating the cgroup v1 %s cgroup %s: %v", ErrController, limitNames([]string{c}), c, dir, err)
	}
	var files [][2]string
	switch {
	case c == "memory" && want:
		files = [][2]string{{"memory.limit_in_bytes", strconv.FormatInt(l.MemoryMax, 10)}}
	case c == "memory":
		files = [][2]string{{"memory.limit_in_bytes", "-1"}}
	case want:
		files = [][2]string{{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", strconv.Itoa(l.CPUPercent * 1000)}}
	default:
		files = [][2]string{{"cpu.cfs_quota_us", "-1"}}
	}
	for _, f := range files {
		p := filepath.Join(dir, f[0])
		if err := os.WriteFile(p, []byte(f[1]), 0); err != nil {
			return fmt.Errorf("%w: writing %q to %s: %v", ErrController, f[1], p, err)
		}
	}
	return nil
}

// EnterThread moves the calling thread into the group's cgroup v1 mirrors
// (none on a host whose cgroup v2 has the controllers), so that the
// process it forks next starts in them; leave moves it back to this
// process's cgroups. The caller must be locked to its thread
// (runtime.LockOSThread) from before EnterThread until after leave.
func (g *Group) EnterThread() (leave func() error, err error) {
	if g == nil || len(g.v1) == 0 {
		return func() error { return nil }, nil
	}
	tid := []byte(strconv.Itoa(syscall.Gettid()))
	back := func(entered []string) error {
		var first error
		for _, c := range entered {
			if err := os.WriteFile(filepath.Join(g.t.v1[c], "tasks"), tid, 0); err != nil && first == nil {
				first = fmt.Errorf("moving the spawning thread back to %s: %w", g.t.v1[c], err)
			}
		}
		return first
	}
	var entered []string
	for _, c := range v1Limited {
		dir := g.v1[c]
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); err != nil {
			back(entered)
			return nil, fmt.Errorf("entering the cgroup v1 %s cgroup %s: %w", c, dir, err)
		}
		entered = append(entered, c)
	}
	return func() error { return back(entered) }, nil
}

// v1Roots are the mirrors of the tree named name in the v1 hierarchies.
func v1Roots(homes map[string]string, name string) []string {
	var roots []string
	for _, c := range v1Limited {
		if h := homes[c]; h != "" {
			roots = append(roots, filepath.Join(h, name))
		}
	}
	return roots
}

// removeV1 kills what is left in the v1 mirror dir (its processes are in
// the v2 tree too, which is killed first: this is for what the kernel has
// not finished yet) and removes it, deepest first, waiting up to wait.
func removeV1(dir string, wait time.Duration) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	dirs := cgroupDirs(dir)
	deadline := time.Now().Add(wait)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
			}
			pids, _ := procs(dirs[i])
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return nil
}

// v1Memory reads the memory use (memory.usage_in_bytes) and the OOM kill
// count (memory.oom_control's oom_kill) of a v1 memory mirror.
func v1Memory(dir string) (usage int64, oomKills uint64, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return 0, 0, false
	}
	usage, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	b, _ = os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			oomKills, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return usage, oomKills, true
}
