package reliability

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/internal/status"
)

// Built once by TestMain into a temporary directory, never into the
// repository (other work may be using bin/).
var (
	loopgateBin string
	appBin      string
	buildErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loopgate-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	loopgateBin = filepath.Join(dir, "loopgate")
	appBin = filepath.Join(dir, "faultapp")
	buildErr = gobuild.Build(loopgateBin, "../cmd/loopgate")
	if buildErr == nil {
		buildErr = gobuild.Build(appBin, "./internal/faultapp")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// long reports whether the full-length scenarios were asked for.
func long() bool { return os.Getenv("LOOPGATE_LONG") == "1" }

// appDir writes a web.config that runs faultapp with the given aspNetCore
// attributes and environment variables, and returns the directory.
func appDir(t *testing.T, attrs string, env map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeConfig(t, dir, attrs, env)
	return dir
}

func writeConfig(t *testing.T, dir, attrs string, env map[string]string) {
	t.Helper()
	var vars strings.Builder
	for k, v := range env {
		fmt.Fprintf(&vars, "        <environmentVariable name=%q value=%q />\n", k, v)
	}
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q shutdownTimeLimit="2" startupTimeLimit="10" %s>
      <environmentVariables>
%s      </environmentVariables>
    </aspNetCore>
  </system.webServer>
</configuration>
`, appBin, attrs, vars.String())
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logLine is one JSON line of loopgate's log.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// lg is one running loopgate.
type lg struct {
	t     *testing.T
	cmd   *exec.Cmd
	front string // the first plain listener's bound address
	admin string
	exitc chan error

	mu    sync.Mutex
	lines []logLine
	raw   []string
	newc  chan struct{} // closed and replaced on each new line
}

// lgOptions is how a test starts loopgate.
type lgOptions struct {
	args   []string // extra serve flags; --listen 127.0.0.1:0 unless one is given
	apps   []string // APP arguments
	noFile uint64   // RLIMIT_NOFILE (soft and hard) for loopgate; 0 keeps the inherited one
	wrap   []string // a command loopgate runs under, e.g. unshare
}

// startLoopgate runs loopgate serve, waits for "ready" and learns the bound
// addresses from the startup log. It is SIGKILLed at cleanup if still
// running; its backends die with it (Pdeathsig), which killBackendsAtCleanup
// double-checks.
func startLoopgate(t *testing.T, o lgOptions) *lg {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	args := []string{"serve", "--admin", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}
	if !hasFlag(o.args, "--listen") {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	args = append(append(args, o.args...), o.apps...)
	cmd := exec.Command(loopgateBin, args...)
	if len(o.wrap) > 0 {
		cmd = exec.Command(o.wrap[0], append(append(o.wrap[1:], loopgateBin), args...)...)
	}
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &lg{t: t, cmd: cmd, exitc: make(chan error, 1), newc: make(chan struct{})}
	if o.noFile > 0 {
		// After its start: the Go runtime raises the soft limit to the hard
		// one at init, so both are set, from outside.
		lim := unix.Rlimit{Cur: o.noFile, Max: o.noFile}
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
			cmd.Process.Kill()
			t.Fatalf("prlimit: %v", err)
		}
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line logLine
			_ = json.Unmarshal(sc.Bytes(), &line) // a non-JSON line is kept raw
			l.mu.Lock()
			l.lines = append(l.lines, line)
			l.raw = append(l.raw, sc.Text())
			close(l.newc)
			l.newc = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	go func() {
		<-readDone
		l.exitc <- cmd.Wait()
	}()
	t.Cleanup(func() {
		l.kill()
		if t.Failed() {
			l.mu.Lock()
			raw := l.raw
			if len(raw) > 200 {
				raw = raw[len(raw)-200:]
			}
			t.Logf("loopgate log (last %d lines):\n%s", len(raw), strings.Join(raw, "\n"))
			l.mu.Unlock()
		}
	})
	if l.waitLog(15*time.Second, func(line logLine) bool { return line.str("event") == "ready" }) == nil {
		t.Fatal("loopgate did not log ready within 15 s")
	}
	l.front = l.waitLog(0, func(line logLine) bool { return line.str("event") == "listening" && line["tls"] == false }).str("addr")
	l.admin = l.waitLog(0, func(line logLine) bool { return line.str("event") == "admin" }).str("addr")
	return l
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// kill SIGKILLs loopgate (if it still runs) and waits, bounded, for it.
func (l *lg) kill() {
	if l.cmd.ProcessState != nil {
		return
	}
	_ = l.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-l.exitc:
	case <-time.After(5 * time.Second):
		l.t.Errorf("loopgate %d not reaped 5 s after SIGKILL", l.cmd.Process.Pid)
	}
}

// waitLog returns the first log line (already seen or new) matching pred,
// or nil after timeout (0: only the lines already there).
func (l *lg) waitLog(timeout time.Duration, pred func(logLine) bool) logLine {
	deadline := time.After(timeout)
	seen := 0
	for {
		l.mu.Lock()
		for ; seen < len(l.lines); seen++ {
			if pred(l.lines[seen]) {
				line := l.lines[seen]
				l.mu.Unlock()
				return line
			}
		}
		newc := l.newc
		l.mu.Unlock()
		if timeout == 0 {
			return nil
		}
		select {
		case <-newc:
		case <-deadline:
			return nil
		}
	}
}

// count returns how many log lines so far match pred.
func (l *lg) count(pred func(logLine) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if pred(line) {
			n++
		}
	}
	return n
}

func (l *lg) url(path string) string { return "http://" + l.front + path }

// status fetches /status from the admin listener.
func (l *lg) status(t *testing.T) status.Snapshot {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + l.admin + "/status")
	if err != nil {
		t.Fatalf("/status: %v", err)
	}
	defer resp.Body.Close()
	var s status.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("/status: %v", err)
	}
	return s
}

// readyPIDs lists the PIDs of the first app's ready processes, by slot.
func (l *lg) readyPIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	for _, p := range l.status(t).Apps[0].Processes {
		if p.State == "ready" && p.PID > 0 {
			pids = append(pids, p.PID)
		}
	}
	return pids
}

// waitReady waits until the first app has n ready processes.
func (l *lg) waitReady(t *testing.T, n int, timeout time.Duration) []int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pids := l.readyPIDs(t)
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d processes ready after %v", len(pids), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procStat is the part of /proc/PID/stat and /proc/PID/status the tests read.
type procStat struct {
	state      byte
	cpu        time.Duration // utime + stime
	rssKB      int64
	openFDs    int
	threads    int
	ppid, pgid int
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ps, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+2:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ps.state = f[0][0]
	ps.ppid, _ = strconv.Atoi(f[1])
	ps.pgid, _ = strconv.Atoi(f[2])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	ps.threads, _ = strconv.Atoi(f[17])
	sb, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err == nil {
		for _, line := range strings.Split(string(sb), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				ps.rssKB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			}
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		ps.openFDs = len(fds)
	}
	return ps, nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	ps, err := readProc(pid)
	return err == nil && ps.state != 'Z'
}

// waitDead waits until none of pids is alive.
func waitDead(t *testing.T, pids []int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var live []int
		for _, p := range pids {
			if alive(p) {
				live = append(live, p)
			}
		}
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still alive after %v", live, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killAtCleanup SIGKILLs pids that outlive the test (they should not).
func killAtCleanup(t *testing.T, pids ...int) {
	t.Cleanup(func() {
		for _, p := range pids {
			if alive(p) {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
}

// appPIDs lists the live processes running faultapp.
func appPIDs() []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", d.Name(), "exe")); err == nil && exe == appBin && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// client is an HTTP client with its own keep-alive pool of at most one
// connection per host, the way a browser tab or a load-test worker behaves.
func client(t *testing.T, timeout time.Duration) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// get fetches url and returns the status and body.
func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// dialRaw opens a TCP connection with a deadline for everything on it.
func dialRaw(t *testing.T, addr string, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(d))
	return c
}
