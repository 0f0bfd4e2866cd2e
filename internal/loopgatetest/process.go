package loopgatetest

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopgate/loopgate/internal/status"
)

// Options is how a test starts loopgate serve. The zero value serves
// nothing on 127.0.0.1:0 with the admin listener on 127.0.0.1:0.
type Options struct {
	// Env is added to the test's own environment.
	Env []string
	// Args are serve's flags followed by its APP arguments. Launch puts
	// --listen 127.0.0.1:0, --admin 127.0.0.1:0, --log-level debug and
	// --control in a fresh temporary directory before them unless Args
	// gives that flag itself, and always --log-format json, which the log
	// capture needs.
	Args []string
	// NoFile sets loopgate's RLIMIT_NOFILE, soft and hard; 0 keeps the
	// inherited one.
	NoFile uint64
	// Wrap is a command loopgate runs under (e.g. unshare ...); the
	// Process is then the wrapper's.
	Wrap []string
	// ReadyTimeout is how long Start waits for the "ready" log line;
	// default 10 s.
	ReadyTimeout time.Duration
	// Cgroup is a cgroup v2 directory loopgate starts in (clone3's
	// CLONE_INTO_CGROUP, so it never runs anywhere else); "" keeps the
	// test's.
	Cgroup string
}

// Process is one running loopgate serve. Its methods are safe for
// concurrent use; Front and Admin are set by Start and not changed after.
type Process struct {
	// Front is the bound address of the first plain (non-TLS) listener.
	Front string
	// Admin is the bound address of the admin listener.
	Admin string
	// Control is the path of the control socket Launch chose ("" when
	// Args gave --control).
	Control string

	t      testing.TB
	cmd    *exec.Cmd
	http   *http.Client  // keep-alive: /status still answers when loopgate is out of fds
	exited chan struct{} // closed once the process is reaped and its log read
	err    error         // cmd.Wait's answer; read after exited is closed

	mu    sync.Mutex
	lines []Line
	raw   []string
	newc  chan struct{} // closed and replaced on each new line
}

// Start launches loopgate serve (see Launch), waits for its "ready" log
// line and learns the bound front and admin addresses from the startup
// log, failing t if either is missing. A loopgate that exits before it is
// ready (a config error) fails t at once with its exit status and the
// last 20 lines of its log.
func Start(t testing.TB, o Options) *Process {
	t.Helper()
	p := Launch(t, o)
	ready := o.ReadyTimeout
	if ready == 0 {
		ready = 10 * time.Second
	}
	if p.waitLog(ready, func(l Line) bool { return l.Str("event") == "ready" }, p.exited) == nil {
		select {
		case <-p.exited:
			code, _ := p.exitStatus()
			raw := p.Raw()
			t.Fatalf("loopgate exited with status %d before it was ready; its log ends:\n%s", code, strings.Join(raw[max(0, len(raw)-20):], "\n"))
		default:
		}
		t.Fatalf("loopgate did not log ready within %v", ready)
	}
	p.Front = p.WaitLog(0, func(l Line) bool { return l.Str("event") == "listening" && l["tls"] == false }).Str("addr")
	p.Admin = p.WaitLog(0, func(l Line) bool { return l.Str("event") == "admin" }).Str("addr")
	if p.Front == "" || p.Admin == "" {
		t.Fatalf("startup log did not name the bound addresses (front %q, admin %q)", p.Front, p.Admin)
	}
	return p
}

// Launch starts loopgate serve with o and returns without waiting for
// anything. At t's cleanup loopgate is SIGKILLed if still running and
// reaped (an error if that takes over 5 s), and its log (the last 200
// lines) is printed if t failed. Its backends die with it (Pdeathsig).
func Launch(t testing.TB, o Options) *Process {
	t.Helper()
	bin := Loopgate(t)
	args := []string{"serve", "--log-format", "json"}
	for _, d := range [][2]string{{"--listen", "127.0.0.1:0"}, {"--admin", "127.0.0.1:0"}, {"--log-level", "debug"}} {
		if !hasFlag(o.Args, d[0]) {
			args = append(args, d[0], d[1])
		}
	}
	control := ""
	if !hasFlag(o.Args, "--control") {
		// Not t.TempDir(): a socket path must fit in 108 bytes, and not
		// the default: tests run side by side.
		dir, err := os.MkdirTemp("", "lgctl")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		control = dir + "/control.sock"
		args = append(args, "--control", control)
	}
	args = append(args, o.Args...)
	cmd := exec.Command(bin, args...)
	if len(o.Wrap) > 0 {
		cmd = exec.Command(o.Wrap[0], append(append(o.Wrap[1:len(o.Wrap):len(o.Wrap)], bin), args...)...)
	}
	cmd.Env = append(os.Environ(), o.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if o.Cgroup != "" {
		cg, err := os.Open(o.Cgroup)
		if err != nil {
			t.Fatal(err)
		}
		defer cg.Close() // the child has it from its start
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{
		t:      t,
		cmd:    cmd,
		http:   &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}},
		exited: make(chan struct{}),
		newc:   make(chan struct{}),
	}
	p.Control = control
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l Line
			_ = json.Unmarshal(sc.Bytes(), &l) // a non-JSON line is kept raw
			p.mu.Lock()
			p.lines = append(p.lines, l)
			p.raw = append(p.raw, sc.Text())
			close(p.newc)
			p.newc = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		<-readDone // Wait closes the pipe: read everything first
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill()
		p.http.CloseIdleConnections()
		p.checkCgroupGone(t, 10*time.Second)
		if t.Failed() {
			raw := p.Raw()
			n := len(raw)
			if len(raw) > 200 {
				raw = raw[len(raw)-200:]
			}
			t.Logf("loopgate log (last %d of %d lines):\n%s", len(raw), n, strings.Join(raw, "\n"))
		}
	})
	if o.NoFile > 0 {
		// After its start: the Go runtime raises the soft limit to the hard
		// one at init, so both are set, from outside.
		lim := unix.Rlimit{Cur: o.NoFile, Max: o.NoFile}
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			t.Fatalf("prlimit: %v", err)
		}
	}
	return p
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// PID is the process ID of loopgate (or of the Wrap command).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// URL is path on the front listener, e.g. URL("/") is "http://127.0.0.1:port/".
func (p *Process) URL(path string) string { return "http://" + p.Front + path }

// Signal sends sig to loopgate, failing the test if it cannot.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits up to timeout for loopgate to exit and returns its exit
// status (-1 if a signal ended it), failing the test if it does not exit
// in time.
func (p *Process) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		code, err := p.exitStatus()
		if err != nil {
			p.t.Fatalf("waiting for loopgate: %v", err)
		}
		return code
	case <-time.After(timeout):
		p.t.Fatalf("loopgate did not exit within %v", timeout)
		return -1
	}
}

// exitStatus is the exited process's exit status (-1 if a signal ended
// it), or the error waiting for it gave; only after p.exited is closed.
func (p *Process) exitStatus() (int, error) {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, p.err
}

// Kill SIGKILLs loopgate if it still runs and waits, at most 5 s, for it
// to be reaped (an error on the test if not).
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.t.Errorf("loopgate %d not reaped 5 s after SIGKILL", p.PID())
	}
}

// Status fetches and decodes /status from the admin listener (5 s bound),
// failing t on any error or an answer other than 200.
func (p *Process) Status(t testing.TB) status.Snapshot {
	t.Helper()
	resp, err := p.http.Get("http://" + p.Admin + "/status")
	if err != nil {
		t.Fatalf("/status: %v", err)
	}
	defer resp.Body.Close()
	var s status.Snapshot
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("/status: %v", err)
	}
	return s
}

// ReadyPIDs lists the PIDs of the first app's ready processes, by slot.
func (p *Process) ReadyPIDs(t testing.TB) []int {
	t.Helper()
	s := p.Status(t)
	if len(s.Apps) == 0 {
		t.Fatal("/status lists no app")
	}
	var pids []int
	for _, pr := range s.Apps[0].Processes {
		if pr.State == "ready" && pr.PID > 0 {
			pids = append(pids, pr.PID)
		}
	}
	return pids
}

// WaitReady waits up to timeout until the first app has n ready processes
// and returns their PIDs, failing t if it does not.
func (p *Process) WaitReady(t testing.TB, n int, timeout time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pids := p.ReadyPIDs(t)
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d processes ready after %v", len(pids), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkCgroupGone fails t unless the cgroup loopgate logged in its
// "containment" event is gone within timeout of loopgate's exit (see
// WaitCgroupGone).
func (p *Process) checkCgroupGone(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	default:
		return // not reaped: Kill has said so
	}
	for _, dir := range CgroupsLogged(p.Lines()) {
		WaitCgroupGone(t, timeout, dir)
	}
}
