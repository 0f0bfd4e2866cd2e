package bpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOnlyTheAttachedCgroupIsAccelerated is what loopgate relies on when
// it attaches to its own cgroup instead of the mount's root: the sockops
// program sees a connection only through the cgroups of the processes that
// created its sockets. A backend (echo server) runs in a cgroup "inside",
// the one the program is attached to. A client in "inside" is accelerated
// (both ends in the map, messages redirected); a client in a sibling
// cgroup "outside" connecting to the same registered port is not: nothing
// enters the map and no counter moves, although the backend's accepted
// socket belongs to "inside" (it inherits its listener's cgroup and its
// PASSIVE_ESTABLISHED callback runs there) - the program only inserts a
// server's socket after its client's. Attached to the root, as before, the
// outside client would be accelerated too (LOOPGATE_SCOPE_ROOT=1 shows it
// failing).
func TestOnlyTheAttachedCgroupIsAccelerated(t *testing.T) {
	requireBPF(t)
	mnt, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	inside := makeCgroup(t, filepath.Join(mnt, fmt.Sprintf("loopgate-scope-%d", os.Getpid())))
	outside := makeCgroup(t, filepath.Join(mnt, fmt.Sprintf("loopgate-scope-%d-out", os.Getpid())))
	attach := inside
	if os.Getenv("LOOPGATE_SCOPE_ROOT") == "1" {
		attach = mnt
	}
	a := loadAccel(t, Options{CgroupPath: attach})
	if a.CgroupPath() != attach {
		t.Fatalf("CgroupPath() = %q, want %q", a.CgroupPath(), attach)
	}

	echo, port := startAcceleratedEcho(t, a, inside)

	// The outside client: connects, echoes 3 x 1000 bytes, holds the
	// connection open while the map is read.
	before := counters(t, a)
	out := startScopeChild(t, outside, "client", strconv.Itoa(int(port)))
	if got := out.line(t); got != "ok" {
		t.Fatalf("outside client: %q", got)
	}
	time.Sleep(100 * time.Millisecond) // a late PASSIVE_ESTABLISHED would show by now
	n := socketCount(t, a)
	after := counters(t, a)
	t.Logf("outside client (cgroup %s), connection open: %d sockets in the map, counters %+v", filepath.Base(outside), n, after)
	if n != 0 {
		t.Errorf("a client outside the attached cgroup left %d sockets in the map, want 0", n)
	}
	if after != before {
		t.Errorf("counters moved for a client outside the attached cgroup: before %+v, after %+v", before, after)
	}
	out.stop(t)

	in := startScopeChild(t, inside, "client", strconv.Itoa(int(port)))
	if got := in.line(t); got != "ok" {
		t.Fatalf("inside client: %q", got)
	}
	n = socketCount(t, a)
	got := counters(t, a)
	t.Logf("inside client (cgroup %s), connection open: %d sockets in the map, counters %+v", filepath.Base(inside), n, got)
	if n != 2 {
		t.Errorf("a client inside the attached cgroup left %d sockets in the map, want 2", n)
	}
	if got.SocketsAdded-after.SocketsAdded != 2 || got.Redirected-after.Redirected < 6 || got.Passed != after.Passed {
		t.Errorf("inside client: %d sockets added, %d messages redirected, %d passed; want 2, at least 6, 0",
			got.SocketsAdded-after.SocketsAdded, got.Redirected-after.Redirected, got.Passed-after.Passed)
	}
	in.stop(t)
	echo.stop(t)
}

// TestLeafBelowAttachedCgroupIsAccelerated: cgroups made below the
// attached cgroup after the attach are covered, which loopgate relies on
// twice: its backends' cgroups (loopgate-<pid>/<app>/p<n>), and the leaf
// loopgate-<pid>.self it moves itself into when a limit needs a controller
// (internal/cgroup, leaf.go) after the sockops program was attached to its
// own cgroup. A client in the leaf connecting to a backend in
// loopgate-<pid>/root/p1 is accelerated.
func TestLeafBelowAttachedCgroupIsAccelerated(t *testing.T) {
	requireBPF(t)
	mnt, err := CgroupV2Mount()
	if err != nil {
		t.Fatal(err)
	}
	own := makeCgroup(t, filepath.Join(mnt, fmt.Sprintf("loopgate-leafscope-%d", os.Getpid())))
	a := loadAccel(t, Options{CgroupPath: own})
	tree := makeCgroup(t, filepath.Join(own, "loopgate-1"))
	backend := makeCgroup(t, filepath.Join(makeCgroup(t, filepath.Join(tree, "root")), "p1"))
	leaf := makeCgroup(t, filepath.Join(own, "loopgate-1.self"))

	echo, port := startAcceleratedEcho(t, a, backend)
	before := counters(t, a)
	in := startScopeChild(t, leaf, "client", strconv.Itoa(int(port)))
	if got := in.line(t); got != "ok" {
		t.Fatalf("client in the leaf: %q", got)
	}
	n := socketCount(t, a)
	got := counters(t, a)
	t.Logf("client in %s, backend in %s: %d sockets in the map, counters %+v", leaf, backend, n, got)
	if n != 2 || got.SocketsAdded-before.SocketsAdded != 2 || got.Redirected-before.Redirected < 6 {
		t.Errorf("client in the leaf: %d sockets in the map, %d added, %d messages redirected; want 2, 2, at least 6",
			n, got.SocketsAdded-before.SocketsAdded, got.Redirected-before.Redirected)
	}
	in.stop(t)
	echo.stop(t)
}

// makeCgroup creates a cgroup v2 directory, removed at cleanup once the
// processes the test put in it are gone.
func makeCgroup(tb testing.TB, dir string) string {
	tb.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		if os.Getenv("LOOPGATE_REQUIRE_BPF") == "1" {
			tb.Fatalf("LOOPGATE_REQUIRE_BPF=1 but creating a cgroup failed: %v", err)
		}
		tb.Skipf("creating a cgroup: %v", err)
	}
	tb.Cleanup(func() {
		// Children are reaped before this runs (cleanups run last-in
		// first-out), but a cgroup empties a moment after its last exit.
		var err error
		if !waitFor(5*time.Second, func() bool { err = os.Remove(dir); return err == nil || errors.Is(err, os.ErrNotExist) }) {
			tb.Errorf("removing cgroup %s: %v", dir, err)
		}
	})
	return dir
}

// scopeProc is a child of the test binary started in a given cgroup.
type scopeProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startAcceleratedEcho starts an echo child in cgroup dir and adds its
// port to a's sockmap ports: the child and its port.
func startAcceleratedEcho(tb testing.TB, a *Accel, dir string) (*scopeProc, uint64) {
	tb.Helper()
	echo := startScopeChild(tb, dir, "echo")
	port, err := strconv.ParseUint(echo.line(tb), 10, 16)
	if err != nil {
		tb.Fatalf("echo child: %v", err)
	}
	if err := a.AddPort(uint16(port)); err != nil {
		tb.Fatal(err)
	}
	return echo, port
}

// startScopeChild starts this test binary as LOOPGATE_BPF_CHILD=role
// directly in cgroup dir (clone3's CLONE_INTO_CGROUP: it never runs
// anywhere else), killed and reaped at cleanup.
func startScopeChild(tb testing.TB, dir, role string, args ...string) *scopeProc {
	tb.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer cg.Close()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LOOPGATE_BPF_CHILD="+role)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd()), Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s child in %s: %v", role, dir, err)
	}
	p := &scopeProc{cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
	tb.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	// It must really be there: /proc/<pid>/cgroup names dir.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	mnt, _ := CgroupV2Mount()
	if !bytes.Contains(b, []byte("0::"+strings.TrimPrefix(dir, filepath.Clean(mnt))+"\n")) {
		tb.Fatalf("%s child is not in %s: /proc/%d/cgroup says %q", role, dir, cmd.Process.Pid, b)
	}
	return p
}

// line returns the child's next line of output, within 10 s.
func (p *scopeProc) line(tb testing.TB) string {
	tb.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			tb.Fatal("child exited without a line")
		}
		return l
	case <-time.After(10 * time.Second):
		tb.Fatal("no line from child within 10 s")
	}
	return ""
}

// stop closes the child's stdin, which tells it to close its sockets and
// exit, and waits for that (5 s).
func (p *scopeProc) stop(tb testing.TB) {
	tb.Helper()
	p.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("child: %v", err)
		}
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		tb.Error("child did not exit within 5 s of its stdin closing")
	}
}

// scopeChild is the child half of TestOnlyTheAttachedCgroupIsAccelerated.
// "echo": listens on 127.0.0.1, prints its port and echoes every
// connection through a buffer. "client": connects to the port in its
// argument, echoes 3 x 1000 bytes, prints "ok" and keeps the connection
// open. Both exit when stdin closes.
func scopeChild(role string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, role+" child:", err)
		os.Exit(1)
	}
	switch role {
	case "echo":
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			fail(err)
		}
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		go func() {
			for {
				c, err := ln.AcceptTCP()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.CopyBuffer(plainConn{Writer: c}, plainConn{Reader: c}, make([]byte, 64<<10))
				}()
			}
		}()
	case "client":
		if len(os.Args) < 2 {
			fail(errors.New("no port"))
		}
		c, err := net.Dial("tcp4", "127.0.0.1:"+os.Args[1])
		if err != nil {
			fail(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := []byte(strings.Repeat("x", 1000))
		buf := make([]byte, len(msg))
		for i := 0; i < 3; i++ {
			if _, err := c.Write(msg); err != nil {
				fail(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				fail(err)
			}
		}
		fmt.Println("ok")
	}
	io.Copy(io.Discard, os.Stdin)
}
