package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

func TestTreeOwner(t *testing.T) {
	for name, want := range map[string]int{"loopgate-12": 12, "loopgate-12.3": 12, "loopgate-x": 0, "loopgate-12.self": 0, "app_x": 0, "loopgate-": 0, "loopgate-0": 0} {
		if got, ok := treeOwner(name); got != want || ok != (want != 0) {
			t.Errorf("treeOwner(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}

// staleTree makes home/name/root/p1 as a loopgate named so would have, with
// a sleep running in p1 unless noProc; it returns the tree's path and the
// sleep's pid.
func staleTree(t *testing.T, home, name string, noProc bool) (string, int) {
	t.Helper()
	dir := filepath.Join(home, name)
	p1 := filepath.Join(dir, "root", "p1")
	if err := os.MkdirAll(p1, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(dir, 5*time.Second) })
	if noProc {
		return dir, 0
	}
	fd, err := os.Open(p1)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	loopgatetest.KillAtCleanup(t, cmd.Process.Pid)
	return dir, cmd.Process.Pid
}

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestSweep: a tree whose loopgate is gone is killed and removed; one whose
// loopgate runs, or whose keeper runs, or whose lock is held (its loopgate
// runs in a PID namespace where its pid means nothing here), is not touched; a pid reused by a
// process that began after the tree was made does not keep it.
func TestSweep(t *testing.T) {
	needCgroups(t)
	mnt, _ := Mount()
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(mnt, self)

	gone, goneProc := staleTree(t, home, "loopgate-"+strconv.Itoa(deadPID(t))+".91", false)
	// Its cgroup v1 mirrors, where this host has v1 hierarchies of memory
	// or cpu, with the process in them.
	var goneMirrors []string
	for _, root := range v1Roots(v1Homes(), filepath.Base(gone)) {
		if err := os.MkdirAll(filepath.Join(root, "root"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeV1(root, 5*time.Second) })
		if err := os.WriteFile(filepath.Join(root, "root", "cgroup.procs"), []byte(strconv.Itoa(goneProc)), 0); err != nil {
			t.Fatal(err)
		}
		goneMirrors = append(goneMirrors, root)
	}

	// A "loopgate" that runs in home and began before its tree.
	owner := exec.Command("sleep", "600")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	go owner.Wait()
	loopgatetest.KillAtCleanup(t, owner.Process.Pid)
	time.Sleep(20 * time.Millisecond)
	live, liveProc := staleTree(t, home, "loopgate-"+strconv.Itoa(owner.Process.Pid)+".92", false)

	// This test process, which began (the tree's times say) an hour after
	// its tree was made: a reused pid.
	reused, _ := staleTree(t, home, "loopgate-"+strconv.Itoa(os.Getpid())+".93", true)
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(reused, past, past); err != nil {
		t.Fatal(err)
	}

	// A dead loopgate whose keeper still runs.
	kept, keptProc := staleTree(t, home, "loopgate-"+strconv.Itoa(deadPID(t))+".94", false)
	w, kproc, exited, err := spawnKeeper("/proc/self/exe", kept, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { w.Close(); <-exited }()

	// A running loopgate whose pid this process cannot see (it runs in
	// another PID namespace): its tree's lock is held.
	unseen, unseenProc := staleTree(t, home, "loopgate-"+strconv.Itoa(deadPID(t))+".95", false)
	lock, err := lockTree(unseen)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()

	swept := map[string]Swept{}
	for _, s := range sweep(mnt, home) {
		swept[s.Dir] = s
	}
	if s, ok := swept[gone]; !ok || s.Err != nil || s.Killed != 1 {
		t.Errorf("gone loopgate's tree: swept %+v %v, want removed with 1 process killed", s, ok)
	}
	loopgatetest.WaitDead(t, 2*time.Second, goneProc)
	for _, dir := range append(goneMirrors, gone) {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", dir, err)
		}
	}
	t.Logf("swept %s and its cgroup v1 mirrors %v", gone, goneMirrors)
	if s, ok := swept[reused]; !ok || s.Err != nil {
		t.Errorf("tree of a reused pid: swept %+v %v, want removed", s, ok)
	}
	for dir, pid := range map[string]int{live: liveProc, kept: keptProc, unseen: unseenProc} {
		if _, ok := swept[dir]; ok {
			t.Errorf("%s swept, but its loopgate or keeper runs", dir)
		}
		if !loopgatetest.Alive(pid) {
			t.Errorf("process %d in %s killed", pid, dir)
		}
	}
	if !loopgatetest.Alive(kproc.Pid) {
		t.Errorf("keeper %d gone", kproc.Pid)
	}
}
