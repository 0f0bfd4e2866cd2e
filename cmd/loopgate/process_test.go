package main

// Tests that run the real loopgate binary as a subprocess against a test
// backend (testdata/backend) or the example app: the drain on SIGTERM with a
// request in flight, sd_notify, SIGHUP, SIGUSR1, SIGQUIT, configuration
// errors, and `make run` end to end. Every process is killed in t.Cleanup
// and every wait is bounded.

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/internal/status"
)

// Built once in TestMain.
var (
	loopgateBin string
	backendBin  string
	buildErr    error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "loopgate-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	loopgateBin = filepath.Join(dir, "loopgate")
	backendBin = filepath.Join(dir, "backend")
	buildErr = gobuild.Build(loopgateBin, ".")
	if buildErr == nil {
		buildErr = gobuild.Build(backendBin, "./testdata/backend")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needBinaries(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// writeApp makes an app directory whose web.config runs the test backend.
func backendApp(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	writeBackendConfig(t, dir, extra)
	return dir
}

func writeBackendConfig(t *testing.T, dir, extra string) {
	t.Helper()
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath="%s" shutdownTimeLimit="2" startupTimeLimit="10">
      <environmentVariables>
        %s
      </environmentVariables>
    </aspNetCore>
  </system.webServer>
</configuration>
`, backendBin, extra)
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logLine is one JSON log line loopgate wrote.
type logLine map[string]any

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// instance is one running loopgate.
type instance struct {
	t     *testing.T
	cmd   *exec.Cmd
	front string // bound address of the first plain listener
	admin string // bound admin address
	exitc chan error

	mu    sync.Mutex
	lines []logLine
	raw   []string
	newc  chan struct{} // closed and replaced on each new line
}

// start runs `loopgate serve --listen 127.0.0.1:0 --admin 127.0.0.1:0` plus
// args, waits for the "ready" log line and learns the bound addresses from
// the startup log.
func start(t *testing.T, env []string, args ...string) *instance {
	t.Helper()
	in := launch(t, env, args...)
	if in.waitLog(10*time.Second, func(l logLine) bool { return l.str("event") == "ready" }) == nil {
		t.Fatal("loopgate did not log ready")
	}
	in.front = in.waitLog(0, func(l logLine) bool { return l.str("event") == "listening" && l["tls"] == false }).str("addr")
	in.admin = in.waitLog(0, func(l logLine) bool { return l.str("event") == "admin" }).str("addr")
	if in.front == "" || in.admin == "" {
		t.Fatalf("startup log did not name the bound addresses (front %q, admin %q)", in.front, in.admin)
	}
	return in
}

// launch starts loopgate serve without waiting for anything.
func launch(t *testing.T, env []string, args ...string) *instance {
	t.Helper()
	needBinaries(t)
	all := append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug"}, args...)
	cmd := exec.Command(loopgateBin, all...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, cmd: cmd, exitc: make(chan error, 1), newc: make(chan struct{})}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l logLine
			json.Unmarshal(sc.Bytes(), &l) // a non-JSON line is kept raw
			in.mu.Lock()
			in.lines = append(in.lines, l)
			in.raw = append(in.raw, sc.Text())
			close(in.newc)
			in.newc = make(chan struct{})
			in.mu.Unlock()
		}
	}()
	go func() {
		<-readDone // Wait closes the pipe; read everything first
		in.exitc <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			select {
			case <-in.exitc:
			case <-time.After(5 * time.Second):
			}
		}
		if t.Failed() {
			in.mu.Lock()
			t.Logf("loopgate log:\n%s", strings.Join(in.raw, "\n"))
			in.mu.Unlock()
		}
	})
	return in
}

// waitLog returns the first log line (old or new) matching pred, or nil
// after timeout.
func (in *instance) waitLog(timeout time.Duration, pred func(logLine) bool) logLine {
	deadline := time.After(timeout)
	seen := 0
	for {
		in.mu.Lock()
		for ; seen < len(in.lines); seen++ {
			if pred(in.lines[seen]) {
				l := in.lines[seen]
				in.mu.Unlock()
				return l
			}
		}
		newc := in.newc
		in.mu.Unlock()
		select {
		case <-newc:
		case <-deadline:
			return nil
		}
	}
}

// wait waits for loopgate to exit and returns its exit status.
func (in *instance) wait(timeout time.Duration) int {
	in.t.Helper()
	select {
	case err := <-in.exitc:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			in.t.Fatalf("waiting for loopgate: %v", err)
		}
		return 0
	case <-time.After(timeout):
		in.t.Fatalf("loopgate did not exit within %v", timeout)
		return -1
	}
}

func (in *instance) signal(sig syscall.Signal) {
	in.t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		in.t.Fatalf("signal %v: %v", sig, err)
	}
}

var httpc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches a URL and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

func (in *instance) status(t *testing.T) status.Snapshot {
	t.Helper()
	code, body := get(t, "http://"+in.admin+"/status")
	var s status.Snapshot
	if code != 200 || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("/status: %d %s", code, body)
	}
	return s
}

// alive reports whether a process exists (and is not a zombie).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised command name, is the state.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// waitDead waits until pid is gone.
func waitDead(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killAtCleanup makes sure a backend the test learned about never outlives it.
func killAtCleanup(t *testing.T, pid int) {
	t.Cleanup(func() {
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// notifySocket listens like systemd does and returns NOTIFY_SOCKET=... and
// a function that returns the next message (or "" after timeout).
func notifySocket(t *testing.T) (string, func(time.Duration) string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return "NOTIFY_SOCKET=" + path, func(timeout time.Duration) string {
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(timeout))
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
}

// dial tries a TCP connection.
func dial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

func pidOf(t *testing.T, body string) int {
	t.Helper()
	var pid int
	if _, err := fmt.Sscanf(strings.TrimSpace(body), "pid=%d", &pid); err != nil {
		t.Fatalf("no pid in %q", body)
	}
	return pid
}
