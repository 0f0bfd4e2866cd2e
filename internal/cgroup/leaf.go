package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The leaf is what systemd's DelegateSubgroup= does for a service: cgroup v2
// lets a cgroup other than the root enable a controller for its children
// (cgroup.subtree_control) only while no process is in it, and loopgate's
// own cgroup holds loopgate (and its keeper). So when a limit needs a
// controller there, loopgate moves its own processes into a leaf cgroup,
// loopgate-<pid>.self, beside its tree loopgate-<pid>, not inside it:
//   - the tree keeps only the apps' cgroups, so killing it (Close, the
//     keeper, the sweep) never kills loopgate or the keeper doing the
//     killing;
//   - the name cannot be taken by an app (apps' cgroups are inside the
//     tree) nor by another loopgate's tree (loopgate-<pid>[.<n>]), and
//     says whose it is;
//   - the eBPF sockops program, attached to loopgate's own cgroup before
//     the move (it is loaded before the apps start), covers every cgroup
//     below it, the leaf included, as it covers the backends' cgroups.
//
// A process cannot remove the cgroup it is in, so the leaf outlives
// loopgate (empty once the keeper has exited): the next loopgate's sweep
// removes it, and systemd removes it with the service's cgroup.
const leafSuffix = ".self"

// leafOf is the leaf of the tree dir.
func leafOf(dir string) string { return dir + leafSuffix }

// homeOf strips the leaf from a cgroup path: a loopgate that moved into its
// leaf, and a loopgate forked there (an upgrade's new process), still
// count the cgroup they were started in as theirs.
func homeOf(p string) string {
	tree, ok := strings.CutSuffix(filepath.Base(p), leafSuffix)
	if _, own := treeOwner(tree); ok && own {
		return filepath.Dir(p)
	}
	return p
}

// moveToLeaf moves loopgate's own processes out of own (loopgate's own
// cgroup, the tree's parent) into the tree's leaf, so that own may enable
// a controller for its children. It refuses, saying who they are, when
// other processes share own.
func (t *Tree) moveToLeaf(own, setting, c string) error {
	leaf := leafOf(t.dir)
	// A keeper started again while moving lands in own: look again.
	for range 3 {
		pids, err := procs(own)
		if err != nil {
			return fmt.Errorf("%w: %s: reading %s: %v", ErrController, setting, filepath.Join(own, "cgroup.procs"), err)
		}
		if len(pids) == 0 {
			return nil
		}
		var others []string
		for _, pid := range pids {
			if !t.ours(pid) {
				others = append(others, strconv.Itoa(pid)+" ("+comm(pid)+")")
			}
		}
		if len(others) > 0 {
			return fmt.Errorf("%w: %s needs the %s controller in the apps' cgroups, and loopgate's own cgroup %s must hand it down, "+
				"which cgroup v2 allows only once no process is in it; loopgate would move itself and its keeper into a leaf cgroup, "+
				"but other processes share its cgroup: %s; run loopgate in a cgroup of its own (systemd: Delegate=yes, with "+
				"DelegateSubgroup= or without other processes in the unit; a container: loopgate alone in it), or leave %s out",
				ErrController, setting, c, own, strings.Join(others, ", "), setting)
		}
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s: creating the leaf cgroup for loopgate itself: %v", ErrController, setting, err)
		}
		for _, pid := range pids {
			err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
			if err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("%w: %s: moving process %d (%s) into %s: %v", ErrController, setting, pid, comm(pid), leaf, err)
			}
		}
	}
	return nil
}

// ours reports whether process pid is loopgate's own: loopgate, its
// keeper, or the loopgate that started it (its built-in init as PID 1).
func (t *Tree) ours(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	if pid == os.Getppid() && sameFile("/proc/self/exe", "/proc/"+strconv.Itoa(pid)+"/exe") {
		return true
	}
	return keeperDir(pid) == t.dir
}

// keeperDir is the tree process pid keeps, "" if it is not a keeper.
func keeperDir(pid int) string {
	if comm(pid) != "loopgate-keeper" {
		return ""
	}
	env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(keeperEnv+"=")); ok {
			return string(v)
		}
	}
	return ""
}

// comm is process pid's name, "?" if it is gone.
func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return string(bytes.TrimSpace(b))
}

func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// procs lists the processes in the cgroup dir itself (not below it).
func procs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
