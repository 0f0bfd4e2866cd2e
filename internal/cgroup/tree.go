// loopgate's own cgroup (Tree): made and locked at Open, with the sweep of
// what killed loopgates left and the keeper started, and killed and removed
// at Close; and the kill, populated check and removal of a subtree.

package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options configures Open.
type Options struct {
	// Keeper is the executable started as the keeper, with
	// LOOPGATE_CGROUP_KEEPER set in its environment; its main must call
	// KeeperMain first. "" means this process's own executable
	// (/proc/self/exe).
	Keeper string
	// NoCgroup skips the cgroup and contains by process group only (what
	// remains without write access to a cgroup v2 hierarchy).
	NoCgroup bool
	// KeeperLost, if set, is called (from another goroutine) when the
	// keeper exited while loopgate runs: with nil once a new one has
	// started, with the error while none can be.
	KeeperLost func(err error)
}

// Tree is what loopgate has to keep its backends' process trees from
// outliving it: a cgroup of its own below loopgate's cgroup (when it can
// create one) with a cgroup per backend process, and the keeper process.
// Safe for concurrent use. Close it once the backends are gone.
type Tree struct {
	dir    string   // absolute path of loopgate-<pid>; "" without a cgroup
	lock   *os.File // dir's lock (lock.go), held until Close
	why    string   // why there is no cgroup (or no keeper)
	keeper *keeper
	swept  []Swept
	v1     map[string]string // controller: this process's cgroup v1 cgroup (v1.go)

	mu     sync.Mutex
	seq    uint64
	closed bool
	v1Apps map[string]map[string]string // app: controller: its v1 mirror, where a limit is set
}

// Open creates the cgroup loopgate-<pid> below this process's cgroup and
// starts the keeper. First it sweeps that cgroup: a loopgate-<pid> left by
// a loopgate that is gone with its keeper is killed and removed (Swept
// lists them). Without a usable cgroup v2 hierarchy (none mounted, no
// write access) it contains by process group only and says why in Why;
// without a keeper (the executable cannot be started) it still returns a
// Tree, and Why says so. It fails only if neither works.
func Open(opts Options) (*Tree, error) {
	t := &Tree{}
	var whys []string
	if opts.NoCgroup {
		whys = append(whys, "cgroups not wanted")
	} else {
		dir, lock, swept, err := makeOwn()
		if err != nil {
			whys = append(whys, err.Error())
		}
		t.dir, t.lock, t.swept = dir, lock, swept
		if dir != "" {
			t.v1, t.v1Apps = v1Homes(), map[string]map[string]string{}
		}
	}
	exe := opts.Keeper
	if exe == "" {
		// Not os.Executable(): /proc/self/exe runs this program even after
		// its file was replaced or deleted by an upgrade.
		exe = "/proc/self/exe"
	}
	k, err := startKeeper(exe, t.dir, t.lock, opts.KeeperLost)
	if err != nil {
		whys = append(whys, err.Error())
	}
	t.keeper = k
	t.why = strings.Join(whys, "; ")
	if t.dir == "" && k == nil {
		return nil, fmt.Errorf("process tree containment: %s", t.why)
	}
	return t, nil
}

// makeOwn sweeps this process's cgroup and creates loopgate-<pid> below
// it, locked (lock.go).
func makeOwn() (string, *os.File, []Swept, error) {
	mnt, err := Mount()
	if err != nil {
		return "", nil, nil, err
	}
	self, err := Self()
	if err != nil {
		return "", nil, nil, err
	}
	swept := sweep(mnt, filepath.Join(mnt, self))
	// loopgate-<pid>, unless that is taken: by a loopgate with the same pid
	// in another PID namespace, or left behind by one whose keeper could
	// not clean up and which the sweep could not remove. Someone else's
	// cgroup is never reused.
	base := filepath.Join(mnt, self, "loopgate-"+strconv.Itoa(os.Getpid()))
	dir := base
	var lock *os.File
	for i, tries := 1, 0; ; {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			// Another loopgate's sweep may take the new, unlocked
			// directory for a left one; it holds the lock while it
			// removes it, and lockTree sees it gone.
			lock, err = lockTree(dir)
			if errors.Is(err, errTreeRemoved) && tries < 10 {
				tries++
				continue
			}
			if err != nil {
				os.Remove(dir)
				return "", nil, swept, err
			}
			break
		}
		if !errors.Is(err, fs.ErrExist) || i == 100 {
			return "", nil, swept, fmt.Errorf("creating a cgroup below %s: %w", filepath.Join(mnt, self), err)
		}
		dir = base + "." + strconv.Itoa(i)
		i++
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		lock.Close()
		os.Remove(dir)
		return "", nil, swept, fmt.Errorf("%s is not a cgroup v2 directory: %w", dir, err)
	}
	// The apps' cgroups get the memory controller where loopgate's has it
	// (its parent enabled it for loopgate's cgroup), so Usage reads
	// memory.current; elsewhere it sums RSS. Best effort: nothing depends
	// on it.
	if c, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); err == nil && slices.Contains(strings.Fields(string(c)), "memory") {
		_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0)
	}
	return dir, lock, swept, nil
}

// Swept lists the cgroups of gone loopgates that Open killed and removed.
func (t *Tree) Swept() []Swept {
	if t == nil {
		return nil
	}
	return t.swept
}

// Dir is the absolute path of loopgate's cgroup, "" without one.
func (t *Tree) Dir() string { return t.dir }

// Mode names the containment in force, for logs and /status: "cgroup"
// (a cgroup per backend process, and a keeper), "cgroup-no-keeper",
// "process-group" (the keeper kills process groups) or "none".
func (t *Tree) Mode() string {
	switch {
	case t == nil:
		return "none"
	case t.dir != "" && t.keeper != nil:
		return "cgroup"
	case t.dir != "":
		return "cgroup-no-keeper"
	}
	return "process-group"
}

// Why says what is missing from full containment ("" if nothing).
func (t *Tree) Why() string {
	if t == nil {
		return ""
	}
	return t.why
}

// Close kills every backend left in loopgate's cgroup, removes it and
// stops the keeper. It returns at once when called again.
func (t *Tree) Close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	var err error
	if t.dir != "" {
		err = removeAll(t.dir, 5*time.Second)
		for _, root := range v1Roots(t.v1, filepath.Base(t.dir)) {
			if rerr := removeV1(root, 5*time.Second); err == nil {
				err = rerr
			}
		}
	}
	if t.keeper != nil {
		t.keeper.close()
	}
	if t.lock != nil {
		t.lock.Close()
	}
	return err
}

// kill writes to cgroup.kill (Linux 5.14); before that it SIGKILLs the
// processes listed in cgroup.procs of dir and its descendants until none is
// left, which a process forking as fast as it is killed can outrun for a
// while.
func kill(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	deadline := time.Now().Add(time.Second)
	for populated(dir) && time.Now().Before(deadline) {
		eachProc(dir, func(p string) {
			if pid, err := strconv.Atoi(p); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		time.Sleep(time.Millisecond)
	}
	return nil
}

// populated reads the populated key of dir's cgroup.events: true while any
// process is in dir or below it. An unreadable file counts as empty.
func populated(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "populated "); ok {
			return v != "0"
		}
	}
	return false
}

// removeAll kills everything in dir's subtree, waits up to wait for it to
// empty and removes the subtree's directories, deepest first.
func removeAll(dir string, wait time.Duration) error {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := kill(dir); err != nil {
		return fmt.Errorf("killing cgroup %s: %w", dir, err)
	}
	deadline := time.Now().Add(wait)
	for populated(dir) {
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes %v after SIGKILL", dir, wait)
		}
		time.Sleep(2 * time.Millisecond)
	}
	dirs := cgroupDirs(dir)
	var first error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) && first == nil {
			first = fmt.Errorf("removing cgroup: %w", err)
		}
	}
	return first
}
