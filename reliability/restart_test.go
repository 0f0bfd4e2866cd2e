package reliability

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bpf"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestLoopgateSIGKILLed kills loopgate with SIGKILL while it serves three
// backends (and, where the kernel allows, the eBPF sockmap), then checks
// from outside that no backend survived and that no kernel object of its
// outlived it, and restarts it on the same front port with the backend on
// the same explicit ASPNETCORE_PORT: nothing stale may be in the way.
func TestLoopgateSIGKILLed(t *testing.T) {
	accel := "off"
	if err := bpf.Probe(); err == nil {
		accel = "on"
	} else {
		t.Logf("eBPF acceleration unavailable here (%v): checking processes and ports only", err)
	}
	front := freePort(t)
	backendPort := freePort(t)
	dir := appDir(t, `processesPerApplication="1"`, map[string]string{"ASPNETCORE_PORT": strconv.Itoa(backendPort)})
	// A second app without an explicit port runs three processes.
	dir3 := appDir(t, `processesPerApplication="3"`, nil)
	opts := loopgatetest.Options{Args: []string{"--listen", "127.0.0.1:" + strconv.Itoa(front), "--accel", accel, dir, "/three=" + dir3}}

	l := startLoopgate(t, opts)
	c := client(t, 10*time.Second)
	for _, path := range []string{"/", "/three/"} {
		if code, body, err := get(c, l.URL(path)); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %q %v", path, code, body, err)
		}
	}
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); ; {
		pids = pids[:0]
		for _, app := range l.Status(t).Apps {
			for _, p := range app.Processes {
				if p.State == "ready" {
					pids = append(pids, p.PID)
				}
			}
		}
		if len(pids) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready backends: %v, want 4", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	loopgatetest.KillAtCleanup(t, pids...)
	var objs bpfObjects
	if accel == "on" {
		if s := l.Status(t); !s.Acceleration.Active || s.Acceleration.Redirected == 0 {
			t.Errorf("acceleration %+v: want active with redirected messages", s.Acceleration)
		}
		objs = loopgateBPF(t, l.PID())
		if len(objs.progs) == 0 || len(objs.maps) == 0 {
			t.Fatalf("loopgate %d holds no eBPF programs or maps: %+v", l.PID(), objs)
		}
	}

	start := time.Now()
	l.Kill()
	loopgatetest.WaitDead(t, 5*time.Second, pids...)
	t.Logf("after SIGKILL of loopgate, its %d backends were gone within %v", len(pids), time.Since(start).Round(time.Millisecond))
	if accel == "on" {
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := objs.alive(t)
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("eBPF objects of the killed loopgate still in the kernel 5 s later: %v", left)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("its %d eBPF programs and %d maps were gone from the kernel within %v", len(objs.progs), len(objs.maps), time.Since(start).Round(time.Millisecond))
		if attached := cgroupProgs(t, l.WaitLog(0, func(line loopgatetest.Line) bool { return line.Str("event") == "accel_on" }).Str("cgroup")); containsAny(attached, objs.progs) {
			t.Errorf("a program of the killed loopgate is still attached to the cgroup: %v", attached)
		}
	}

	// Same front port, same backend port: both must be free again.
	l2 := startLoopgate(t, opts)
	if l2.Front != l.Front {
		t.Fatalf("restarted on %s, want %s", l2.Front, l.Front)
	}
	code, body, err := get(client(t, 10*time.Second), l2.URL("/"))
	if err != nil || code != 200 || !strings.HasPrefix(body, "pid=") {
		t.Fatalf("after the restart: %d %q %v", code, body, err)
	}
	s := l2.Status(t)
	p := s.Apps[0].Processes[0]
	loopgatetest.KillAtCleanup(t, p.PID)
	if p.Port != backendPort || s.Apps[0].Starts != 1 || s.Apps[0].LastStartError != "" {
		t.Errorf("restarted app: port %d (want %d), %d starts, last start error %q", p.Port, backendPort, s.Apps[0].Starts, s.Apps[0].LastStartError)
	}
	if accel == "on" {
		if !s.Acceleration.Active || s.Acceleration.Redirected == 0 {
			t.Errorf("restarted loopgate's acceleration %+v: want active and redirecting", s.Acceleration)
		}
		if objs2 := loopgateBPF(t, l2.PID()); containsAny(objs2.progs, objs.progs) {
			t.Errorf("restarted loopgate holds programs of the killed one: %v", objs2.progs)
		}
	}
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// bpfObjects are the eBPF programs and maps a process holds file
// descriptors to, by kernel id.
type bpfObjects struct{ progs, maps []int }

// loopgateBPF reads the ids from /proc/PID/fdinfo: each eBPF fd says
// prog_id or map_id there.
func loopgateBPF(t *testing.T, pid int) bpfObjects {
	t.Helper()
	var o bpfObjects
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			id, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || seen[k+v] {
				continue
			}
			switch k {
			case "prog_id":
				o.progs = append(o.progs, id)
			case "map_id":
				o.maps = append(o.maps, id)
			default:
				continue
			}
			seen[k+v] = true
		}
		f.Close()
	}
	return o
}

// alive lists the objects the kernel still has, asking bpftool (skipped
// where it is not installed).
func (o bpfObjects) alive(t *testing.T) []string {
	t.Helper()
	if _, err := exec.LookPath("bpftool"); err != nil {
		t.Skip("bpftool not installed: cannot look up kernel objects by id")
	}
	var left []string
	for kind, ids := range map[string][]int{"prog": o.progs, "map": o.maps} {
		for _, id := range ids {
			if exec.Command("bpftool", kind, "show", "id", strconv.Itoa(id)).Run() == nil {
				left = append(left, fmt.Sprintf("%s %d", kind, id))
			}
		}
	}
	return left
}

// cgroupProgs lists the ids of the programs attached to a cgroup.
func cgroupProgs(t *testing.T, cgroup string) []int {
	t.Helper()
	out, err := exec.Command("bpftool", "cgroup", "show", cgroup).Output()
	if err != nil {
		t.Fatalf("bpftool cgroup show %s: %v", cgroup, err)
	}
	var ids []int
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if id, err := strconv.Atoi(f[0]); err == nil {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

func containsAny(have, want []int) bool {
	for _, h := range have {
		for _, w := range want {
			if h == w {
				return true
			}
		}
	}
	return false
}
