package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestMain lets the test binary be its own keeper, as loopgate is.
func TestMain(m *testing.M) {
	KeeperMain()
	if c := os.Getenv(leafChildEnv); c != "" {
		os.Exit(leafChild(c))
	}
	os.Exit(m.Run())
}

func TestGroupName(t *testing.T) {
	for in, want := range map[string]string{"/": "root", "/api": "app_api", "/api/v1": "app_api_v1", "/a b%": "app_a_b_", "/root": "app_root"} {
		if got := groupName(in); got != want {
			t.Errorf("groupName(%q) = %q, want %q", in, got, want)
		}
	}
}

// spawnTree starts sh in g: it leaves a sleep in its process group and one
// in a session of its own, prints the three pids and waits. The caller
// kills what the test does not.
func spawnTree(t *testing.T, g *Group) (cmd *exec.Cmd, pids []int) {
	t.Helper()
	cmd = exec.Command("/bin/sh", "-c", `sleep 600 & echo $!; setsid sleep 601 & echo $!; echo $$; wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if fd := g.FD(); fd >= 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.Started(cmd.Process.Pid)
	sc := bufio.NewScanner(out)
	for len(pids) < 3 && sc.Scan() {
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("tree printed %q", sc.Text())
		}
		pids = append(pids, pid)
	}
	t.Cleanup(func() {
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Wait()
	})
	if len(pids) < 3 {
		t.Fatalf("tree printed %v", pids)
	}
	// The second has left the process group once it leads a session.
	deadline := time.Now().Add(5 * time.Second)
	for session(pids[1]) != pids[1] {
		if time.Now().After(deadline) {
			t.Fatalf("process %d never got a session of its own", pids[1])
		}
		time.Sleep(time.Millisecond)
	}
	return cmd, pids
}

// ownerGone does to the keeper what loopgate's death does: its end of the
// pipe closes, and nobody watches the keeper any more.
func ownerGone(tree *Tree) {
	k := tree.keeper
	k.mu.Lock()
	k.closing = true // no restart: "loopgate" is gone
	k.w.Close()
	k.w = nil
	k.mu.Unlock()
}

// session is pid's session id from /proc (0 if unknown).
func session(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp session ...
	if len(f) < 4 {
		return 0
	}
	sid, _ := strconv.Atoi(f[3])
	return sid
}

func needCgroups(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	if _, err := Mount(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid(1)")
	}
}

// TestGroupRemoveKillsTree: removing a group kills every process in it,
// the one that left the process group and session included.
func TestGroupRemoveKillsTree(t *testing.T) {
	needCgroups(t)
	tree, err := Open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	if tree.Mode() != "cgroup" || tree.Why() != "" {
		t.Fatalf("mode %s, missing %q", tree.Mode(), tree.Why())
	}
	g, err := tree.NewGroup("/api")
	if err != nil {
		t.Fatal(err)
	}
	_, pids := spawnTree(t, g)
	if !g.Populated() {
		t.Fatal("the group is empty after the spawn")
	}
	if err := g.Remove(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	loopgatetest.WaitDead(t, time.Second, pids...)
	if _, err := os.Stat(g.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", g.Dir(), err)
	}
	if err := tree.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree.Dir()); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", tree.Dir(), err)
	}
}

// TestKeeperKillsWhenOwnerGoes: the keeper kills the cgroup's processes (or,
// without a cgroup, the process groups it was told about) as soon as its
// pipe closes, which is what loopgate's death does.
//
// With restart, the first keeper is SIGKILLed while "loopgate" runs: a new
// one must take over, told again about the process groups.
func TestKeeperKillsWhenOwnerGoes(t *testing.T) {
	for _, tc := range []struct{ noCgroup, restart bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		noCgroup := tc.noCgroup
		t.Run(fmt.Sprintf("nocgroup=%v,restart=%v", tc.noCgroup, tc.restart), func(t *testing.T) {
			if !noCgroup {
				needCgroups(t)
			}
			lost := make(chan error, 10)
			tree, err := Open(Options{NoCgroup: noCgroup, KeeperLost: func(err error) { lost <- err }})
			if err != nil {
				t.Fatal(err)
			}
			defer tree.Close()
			if tree.keeper == nil {
				t.Fatalf("no keeper: %s", tree.Why())
			}
			g, err := tree.NewGroup("/")
			if err != nil {
				t.Fatal(err)
			}
			_, pids := spawnTree(t, g)
			if tc.restart {
				tree.keeper.mu.Lock()
				first := tree.keeper.proc
				tree.keeper.mu.Unlock()
				first.Kill()
				select {
				case err := <-lost:
					if err != nil {
						t.Fatalf("keeper not restarted: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the keeper's death went unnoticed for 10 s")
				}
				tree.keeper.mu.Lock()
				second := tree.keeper.proc
				tree.keeper.mu.Unlock()
				if second.Pid == first.Pid || !loopgatetest.Alive(second.Pid) {
					t.Fatalf("keeper %d replaced by %d", first.Pid, second.Pid)
				}
				for _, p := range pids {
					if !loopgatetest.Alive(p) {
						t.Fatalf("process %d died with the keeper", p)
					}
				}
			}
			ownerGone(tree)
			if noCgroup {
				// The process group dies; the process that left it does
				// not: that is the limit of containment without cgroups.
				loopgatetest.WaitDead(t, 2*time.Second, pids[0], pids[2])
				if !loopgatetest.Alive(pids[1]) {
					t.Errorf("the process in its own session died too: did the test run without a cgroup?")
				}
				return
			}
			loopgatetest.WaitDead(t, 2*time.Second, pids...)
			deadline := time.Now().Add(2 * time.Second)
			for {
				if _, err := os.Stat(tree.Dir()); os.IsNotExist(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the keeper left %s", tree.Dir())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
