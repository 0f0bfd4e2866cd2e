package cgroup

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// leafChildEnv makes the test binary a "loopgate" that opens a Tree and
// enables the controller named in it for its apps' cgroups (leafChild).
const leafChildEnv = "CGROUP_TEST_LEAF_CHILD"

// leafReport is what leafChild prints.
type leafReport struct {
	Tree, Err, Cgroup, Self string
	Keeper                  int
	KeeperCgroup            string
	AppControllers          string
}

// leafChild opens a Tree, makes the app "/"'s cgroup, enables controller c
// for it and prints a leafReport; it exits without closing the Tree (as a
// SIGKILLed loopgate would: its keeper cleans up) if it moved.
func leafChild(c string) int {
	tr, err := Open(Options{})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	g, err := tr.NewGroup("/")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	r := leafReport{Tree: tr.Dir()}
	if err := tr.enable(c); err != nil {
		r.Err = err.Error()
	}
	r.Cgroup, _ = procCgroup(os.Getpid())
	r.Self, _ = Self()
	tr.keeper.mu.Lock()
	r.Keeper = tr.keeper.proc.Pid
	tr.keeper.mu.Unlock()
	r.KeeperCgroup, _ = procCgroup(r.Keeper)
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(g.Dir()), "cgroup.controllers"))
	r.AppControllers = strings.TrimSpace(string(b))
	json.NewEncoder(os.Stdout).Encode(r)
	if r.Err != "" {
		g.Remove(time.Second)
		tr.Close()
	}
	return 0
}

// TestLeafMove: a "loopgate" in a cgroup other than the root, holding only
// it and its keeper, moves both into its leaf and enables the controller
// down to its app's cgroup; its keeper still removes its tree when it
// exits without cleaning up, and Self is still the cgroup it started in.
// With another process in the cgroup it does not move, and says which.
func TestLeafMove(t *testing.T) {
	needCgroups(t)
	mnt, _ := Mount()
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(mnt, self)
	// A controller this host's cgroup v2 offers to the test's cgroup (here
	// the hybrid host's hugetlb).
	var c string
	for _, want := range []string{"hugetlb", "pids", "memory"} {
		if words(filepath.Join(home, "cgroup.controllers"), want) {
			c = want
			break
		}
	}
	if c == "" {
		t.Skipf("%s/cgroup.controllers offers none of hugetlb, pids, memory", home)
	}
	// The test's cgroup hands it down: as the root it may while it holds
	// processes. (Left enabled: harmless, and a test running beside this
	// one may rely on it.)
	if !words(filepath.Join(home, "cgroup.subtree_control"), c) {
		if err := os.WriteFile(filepath.Join(home, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			t.Skipf("the test's cgroup %s cannot hand %s down to the test's own cgroup: %v", home, c, err)
		}
	}
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("others=%v", other), func(t *testing.T) {
			h := filepath.Join(home, fmt.Sprintf("leaftest-%d-%v", os.Getpid(), other))
			if err := os.Mkdir(h, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				removeAll(h, 5*time.Second)
			})
			fd, err := os.Open(h)
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			var sleeper int
			if other {
				s := exec.Command("sleep", "600")
				s.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
				if err := s.Start(); err != nil {
					t.Fatal(err)
				}
				go s.Wait()
				sleeper = s.Process.Pid
				loopgatetest.KillAtCleanup(t, sleeper)
			}
			child := exec.Command("/proc/self/exe", "-test.run=^$")
			child.Env = append(os.Environ(), leafChildEnv+"="+c)
			child.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
			child.Stderr = os.Stderr
			done := make(chan struct{})
			var out []byte
			var runErr error
			go func() { out, runErr = child.Output(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				child.Process.Kill()
				<-done
				t.Fatal("the child ran 20 s")
			}
			var r leafReport
			if err := json.Unmarshal(out, &r); err != nil || runErr != nil {
				t.Fatalf("child: %v, %v: %q", runErr, err, out)
			}
			t.Logf("%+v", r)
			rel := strings.TrimPrefix(h, filepath.Clean(mnt))
			if other {
				want := fmt.Sprintf("other processes share its cgroup: %d (sleep)", sleeper)
				if !strings.Contains(r.Err, want) || !strings.Contains(r.Err, "Delegate=yes") {
					t.Errorf("enabling %s with another process in %s: %q, want it named (%q) and what to do", c, h, r.Err, want)
				}
				if r.Cgroup != rel {
					t.Errorf("loopgate moved to %s though it did not enable %s", r.Cgroup, c)
				}
				return
			}
			if r.Err != "" {
				t.Fatalf("enabling %s: %s", c, r.Err)
			}
			leaf := rel + "/" + filepath.Base(r.Tree) + leafSuffix
			if r.Cgroup != leaf || r.KeeperCgroup != leaf {
				t.Errorf("loopgate in %s, its keeper in %s; want both in %s", r.Cgroup, r.KeeperCgroup, leaf)
			}
			if r.Self != rel {
				t.Errorf("Self after the move: %s, want %s", r.Self, rel)
			}
			if !strings.Contains(" "+r.AppControllers+" ", " "+c+" ") {
				t.Errorf("the app's cgroup's controllers %q lack %s", r.AppControllers, c)
			}
			// The child is gone without closing its Tree: its keeper, in
			// the leaf, removes the tree and exits.
			loopgatetest.WaitDead(t, 5*time.Second, r.Keeper)
			if _, err := os.Stat(r.Tree); !os.IsNotExist(err) {
				t.Errorf("the keeper left %s: %v", r.Tree, err)
			}
			// What is left, the leaf, the next loopgate's sweep removes
			// once it is empty (the kernel may count the keeper a moment
			// after its exit).
			deadline := time.Now().Add(5 * time.Second)
			for {
				sweep(mnt, h)
				_, err := os.Stat(filepath.Join(mnt, leaf))
				if os.IsNotExist(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the sweep left the leaf %s 5 s after the keeper's exit: %v (populated: %v)", leaf, err, populated(filepath.Join(mnt, leaf)))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
