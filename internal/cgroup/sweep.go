package cgroup

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Swept is a loopgate-<pid> cgroup left behind by a loopgate that is gone
// (killed together with its keeper: kill -9 -1, an OOM kill of both), which
// Open killed and removed.
type Swept struct {
	Dir    string // the cgroup's absolute path
	Killed int    // processes still running in it, now killed
	Err    error  // nil if it is gone
}

// treeOwner parses a tree's name, loopgate-<pid> or loopgate-<pid>.<n>
// (makeOwn's names), and returns the pid of the loopgate that made it.
func treeOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "loopgate-")
	if !ok {
		return 0, false
	}
	pid, n, hasN := strings.Cut(rest, ".")
	if hasN {
		if _, err := strconv.ParseUint(n, 10, 32); err != nil {
			return 0, false
		}
	}
	p, err := strconv.Atoi(pid)
	if err != nil || p <= 0 {
		return 0, false
	}
	return p, true
}

// sweep kills and removes the trees in home (mnt joined with the cgroup
// loopgate runs in) whose loopgate is gone, and never one whose loopgate
// or keeper still runs: several loopgates may share home. See stale.
func sweep(mnt, home string) []Swept {
	entries, err := os.ReadDir(home)
	if err != nil {
		return nil
	}
	v1 := v1Homes()
	// In a PID namespace below the host's the pids in the names are
	// another namespace's, and a loopgate older than the lock may run
	// unseen: only the lock can tell there.
	nested := nestedPIDNamespace()
	var swept []Swept
	for _, e := range entries {
		pid, ok := treeOwner(e.Name())
		if !e.IsDir() || !ok {
			continue
		}
		dir := filepath.Join(home, e.Name())
		// Held while the tree is swept, so that its loopgate, had it
		// only just made it, makes it again (makeOwn).
		lock := tryLockTree(dir)
		if lock == nil {
			continue // its loopgate or keeper runs
		}
		if nested || !stale(mnt, dir, pid) {
			lock.Close()
			continue
		}
		s := Swept{Dir: dir}
		eachProc(dir, func(string) { s.Killed++ })
		s.Err = removeAll(dir, 5*time.Second)
		for _, root := range v1Roots(v1, e.Name()) {
			if err := removeV1(root, 5*time.Second); err != nil && s.Err == nil {
				s.Err = err
			}
		}
		lock.Close()
		swept = append(swept, s)
	}
	if nested {
		return swept // mirrors have no lock
	}
	// cgroup v1 mirrors (v1.go) whose tree is gone: their loopgate was
	// killed between removing the one and the other. A v1 cgroup may be
	// shared by loopgates whose v2 cgroups differ, so only a dead or
	// reused pid with no keeper of that name counts here.
	for _, c := range v1Limited {
		mirrors, _ := os.ReadDir(v1[c])
		for _, e := range mirrors {
			pid, ok := treeOwner(e.Name())
			root := filepath.Join(v1[c], e.Name())
			if !e.IsDir() || !ok {
				continue
			}
			if _, err := os.Stat(filepath.Join(home, e.Name())); err == nil || !gone(root, pid) || keeperOf(func(dir string) bool { return filepath.Base(dir) == e.Name() }) {
				continue
			}
			s := Swept{Dir: root}
			eachProc(root, func(string) { s.Killed++ })
			s.Err = removeV1(root, 5*time.Second)
			swept = append(swept, s)
		}
	}
	// A leaf whose tree is gone and in which nothing runs any more: its
	// loopgate and keeper have exited (a keeper cannot remove the leaf it
	// is in).
	for _, e := range entries {
		leaf := filepath.Join(home, e.Name())
		if !e.IsDir() || homeOf(leaf) != home {
			continue
		}
		if _, err := os.Stat(strings.TrimSuffix(leaf, leafSuffix)); err == nil || populated(leaf) {
			continue
		}
		os.Remove(leaf)
	}
	return swept
}

// stale reports whether the tree dir, named for loopgate pid, whose lock
// nobody holds, was left by a loopgate that is gone. (A tree made by a
// loopgate older than the lock is never locked: these checks alone keep a
// running one's.) It is not, when
//   - its leaf (where loopgate and its keeper run after moveToLeaf) holds
//     a process: cgroup.events says so whatever PID namespace they are in;
//   - a keeper of it runs (comm loopgate-keeper, its environment naming
//     dir): it is cleaning up, or loopgate runs;
//   - process pid runs, began before dir last changed (a pid reused after
//     the cgroup was made is someone else), and is in dir's parent or a
//     leaf there (homeOf).
func stale(mnt, dir string, pid int) bool {
	if populated(leafOf(dir)) || keeperOf(func(d string) bool { return d == dir }) {
		return false
	}
	if gone(dir, pid) {
		return true
	}
	cg, err := procCgroup(pid)
	if err != nil {
		return false
	}
	return homeOf(filepath.Join(mnt, cg)) != filepath.Dir(dir)
}

// gone reports whether process pid, which made the cgroup stamp, is gone:
// not running, or running since after stamp last changed (a reused pid).
// A stamp that is gone itself is not.
func gone(stamp string, pid int) bool {
	fi, err := os.Stat(stamp)
	if err != nil {
		return false
	}
	began, ok := startTime(pid)
	// The start time is known to a second (btime); a pid reused within a
	// second of the cgroup's last change counts as its loopgate, to be safe.
	return !ok || began.After(fi.ModTime().Add(time.Second))
}

// keeperOf reports whether a keeper runs whose tree matches.
func keeperOf(match func(dir string) bool) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if dir := keeperDir(pid); dir != "" && match(dir) {
				return true
			}
		}
	}
	return false
}

// initPIDNamespace is the inode number of the host's PID namespace
// (PROC_PID_INIT_INO, include/linux/proc_ns.h), fixed since Linux 3.8.
const initPIDNamespace = "pid:[4026531836]"

// nestedPIDNamespace reports whether this process runs in a PID namespace
// below the host's, where /proc (with --mount-proc, as a container's) shows
// only the namespace's processes and the pids of loopgates outside it mean
// nothing. NSpid in /proc/self/status cannot tell: it lists the pids only
// down from the namespace of the /proc mount.
func nestedPIDNamespace() bool {
	ns, err := os.Readlink("/proc/self/ns/pid")
	return err != nil || ns != initPIDNamespace
}

// startTime is when process pid began (to a second), false if it is gone.
func startTime(pid int) (time.Time, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return time.Time{}, false
	}
	f := strings.Fields(string(b[i+1:])) // field 3 (state) onwards
	if len(f) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22, starttime
	if err != nil {
		return time.Time{}, false
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			btime, _ := strconv.ParseInt(v, 10, 64)
			// USER_HZ is 100 on every Linux architecture Go supports.
			return time.Unix(btime, 0).Add(time.Duration(ticks) * 10 * time.Millisecond), true
		}
	}
	return time.Time{}, false
}

// procCgroup is process pid's cgroup v2 path ("0::" line).
func procCgroup(pid int) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseSelf(f)
}
