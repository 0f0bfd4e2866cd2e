package reliability

import (
	"context"
	"encoding/json"
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

	"golang.org/x/net/websocket"

	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/internal/loopgatetest"
	"github.com/loopgate/loopgate/internal/status"
)

// probe GETs an admin path and returns its status code and body.
func probe(t *testing.T, l *loopgatetest.Process, path string) (int, string) {
	t.Helper()
	code, body, err := get(client(t, 5*time.Second), "http://"+l.Admin+path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

// TestShutdownDelayUnderLoad: with --shutdown-delay, SIGTERM turns /readyz
// and /healthz red at once while /livez stays green, and 32 connections of
// load that keep connecting through the delay see no failed request and no
// refused connection; then loopgate drains and exits 0.
func TestShutdownDelayUnderLoad(t *testing.T) {
	const delay = 3 * time.Second
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--shutdown-delay", delay.String(),
		"--drain-timeout", "5s", appDir(t, `processesPerApplication="2"`, nil)}})
	if code, body, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %q %v", code, body, err)
	}
	pids := l.WaitReady(t, 2, 10*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	if code, body := probe(t, l, "/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz before SIGTERM: %d %q", code, body)
	}

	z := startGetLoad(t, 32, l.URL("/"), pidBody, reconnectEvery)
	time.Sleep(500 * time.Millisecond)
	sent := time.Now()
	l.Signal(syscall.SIGTERM)
	// Readiness fails at once (bounded: the signal is handled within ms,
	// even on a loaded machine), liveness does not.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
		code, body := probe(t, l, "/readyz")
		if code == 503 && body == "draining\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz 1 s after SIGTERM: %d %q, want 503 draining", code, body)
		}
	}
	if code, _ := probe(t, l, "/healthz"); code != 503 {
		t.Errorf("/healthz during the shutdown delay: %d, want 503", code)
	}
	if code, body := probe(t, l, "/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez during the shutdown delay: %d %q, want 200 ok", code, body)
	}
	// Load through most of the delay: the delay starts when loopgate
	// handles the signal, after sent, so stopping at sent+2 s leaves the
	// last requests a second of margin before the listeners close.
	time.Sleep(time.Until(sent.Add(delay - time.Second)))
	z.stop(t)
	t.Logf("SIGTERM with --shutdown-delay %v, 32 connections reconnecting every %d requests: %v", delay, reconnectEvery, z)
	z.check(t, 200)
	if code := l.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	if d := time.Since(sent); d < delay {
		t.Errorf("loopgate exited %v after SIGTERM, before --shutdown-delay %v was over", d, delay)
	}
	loopgatetest.WaitDead(t, 5*time.Second, pids...)
	for _, ev := range []string{"shutdown_delay", "drain", "stopped"} {
		if l.WaitLog(0, func(x loopgatetest.Line) bool { return x.Str("event") == ev }) == nil {
			t.Errorf("no %q log event", ev)
		}
	}
}

// TestReadyzFollowsCrashloop: an app whose process cannot start ends in
// crashloop once its rapid-fail window is full; /readyz then says so with
// 503 while /livez and /healthz (loopgate alone) stay 200.
func TestReadyzFollowsCrashloop(t *testing.T) {
	dir := appDir(t, `rapidFailsPerMinute="1"`, map[string]string{"TB_EXIT_AFTER": "1ms"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
	if code, body := probe(t, l, "/readyz"); code != 200 {
		t.Fatalf("/readyz before any request: %d %q (an idle app does not hold readiness back)", code, body)
	}
	c := client(t, 10*time.Second)
	var code int
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		get(c, l.URL("/"))
		code, body = probe(t, l, "/readyz")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after 10 s of failing starts", code, body)
		}
	}
	if !strings.HasPrefix(body, "app /: crashloop") {
		t.Errorf("/readyz body %q, want it to name the app in crashloop", body)
	}
	for _, p := range []string{"/livez", "/healthz"} {
		if code, body := probe(t, l, p); code != 200 {
			t.Errorf("%s with an app in crashloop: %d %q, want 200 (loopgate alone)", p, code, body)
		}
	}
}

// TestReadyzWaitsForAlwaysRunning: an app with startMode="AlwaysRunning"
// holds /readyz back until one of its processes is ready, with the reason;
// /livez stays 200 meanwhile.
func TestReadyzWaitsForAlwaysRunning(t *testing.T) {
	dir := t.TempDir()
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q startupTimeLimit="20">
      <environmentVariables>
        <environmentVariable name="TB_LISTEN_DELAY" value="1500ms" />
      </environmentVariables>
      <handlerSettings>
        <handlerSetting name="startMode" value="AlwaysRunning" />
      </handlerSettings>
    </aspNetCore>
  </system.webServer>
</configuration>
`, loopgatetest.Program(t, backendPkg))
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", dir}})
	code, body := probe(t, l, "/readyz")
	if code != 503 || !strings.Contains(body, "app /: startMode AlwaysRunning: no process ready yet") {
		t.Errorf("/readyz while the AlwaysRunning app starts: %d %q", code, body)
	}
	if code, _ := probe(t, l, "/livez"); code != 200 {
		t.Errorf("/livez while the app starts: %d", code)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, body = probe(t, l, "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q 15 s after start", code, body)
		}
	}
	loopgatetest.KillAtCleanup(t, l.ReadyPIDs(t)...)
}

// rawLoopgate is a loopgate serve started from a binary of the test's own
// (not loopgatetest's shared one, which an upgrade test must not replace),
// logging JSON into a file that the processes it upgrades to share.
type rawLoopgate struct {
	cmd          *exec.Cmd
	log          string
	front, admin string
	control      string // the control socket's path
}

// startRawLoopgate starts bin serve with args on kernel-picked 127.0.0.1
// ports and waits (10 s) for its ready line.
func startRawLoopgate(t *testing.T, bin string, env []string, args ...string) *rawLoopgate {
	t.Helper()
	tmp := t.TempDir()
	logPath, controlPath := filepath.Join(tmp, "loopgate.log"), filepath.Join(tmp, "control.sock")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--control", controlPath, "--log-format", "json", "--log-level", "info"}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &rawLoopgate{cmd: cmd, log: logPath, control: controlPath}
	reaped := make(chan struct{})
	go func() { cmd.Wait(); close(reaped) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		// Whatever an upgrade started from bin, even if the test never
		// learned its PID (its backends die with it), but not the keepers,
		// which run bin too: killed with their loopgate they could not
		// remove its cgroup, which would be left behind.
		for _, pid := range loopgatetest.Running(bin) {
			if !loopgatetest.IsKeeper(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-reaped:
		case <-time.After(5 * time.Second):
			t.Errorf("loopgate %d not reaped", cmd.Process.Pid)
		}
		// Each loopgate's cgroup (the upgraded ones' too) is gone once its
		// keeper has seen it die.
		var lines []loopgatetest.Line
		b, _ := os.ReadFile(logPath)
		for _, s := range strings.Split(string(b), "\n") {
			var l loopgatetest.Line
			if json.Unmarshal([]byte(s), &l) == nil {
				lines = append(lines, l)
			}
		}
		for _, dir := range loopgatetest.CgroupsLogged(lines) {
			loopgatetest.WaitCgroupGone(t, 10*time.Second, dir)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("loopgate log (last 60 lines):\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	ready := r.waitLog(t, 10*time.Second, func(l loopgatetest.Line) bool { return l.Str("event") == "ready" })
	if ready == nil {
		t.Fatal("loopgate did not log ready within 10 s")
	}
	r.front = r.waitLog(t, 0, func(l loopgatetest.Line) bool { return l.Str("event") == "listening" && l["tls"] == false }).Str("addr")
	r.admin = r.waitLog(t, 0, func(l loopgatetest.Line) bool { return l.Str("event") == "admin" }).Str("addr")
	return r
}

// waitLog waits up to d for a log line matching f and returns the first.
func (r *rawLoopgate) waitLog(t *testing.T, d time.Duration, f func(loopgatetest.Line) bool) loopgatetest.Line {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(r.log)
		for _, s := range strings.Split(string(b), "\n") {
			var l loopgatetest.Line
			if json.Unmarshal([]byte(s), &l) == nil && f(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rawLoopgate) status(t *testing.T) status.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	http.DefaultClient.CloseIdleConnections() // never the old process's keep-alive connection
	s, _, err := status.Fetch(ctx, r.admin)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// buildLoopgate builds loopgate with version v into path, atomically (as
// an install does: write aside, then rename), so a running loopgate's
// binary is replaced on disk.
func buildLoopgate(t *testing.T, path, v string) {
	t.Helper()
	tmp := path + ".new"
	if err := gobuild.BuildWith(tmp, "github.com/loopgate/loopgate/cmd/loopgate", "-ldflags", "-X main.version="+v); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// backendPIDs lists every backend PID in a status snapshot.
func backendPIDs(s status.Snapshot) []int {
	var pids []int
	for _, a := range s.Apps {
		for _, p := range a.Processes {
			if p.PID > 0 {
				pids = append(pids, p.PID)
			}
		}
	}
	return pids
}

// TestUpgradeUnderLoad replaces a running loopgate with a rebuilt binary
// (another version string) with `loopgate upgrade` while 32 connections,
// each dialling again every 8 requests, load it: no request fails, no
// connection is refused, /status then shows the new version and PID, the
// old process drains and exits with its backends, and the new one serves
// from backends it started before it took over.
func TestUpgradeUnderLoad(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loopgate")
	buildLoopgate(t, bin, "zdt-old")
	notifyEnv, notes := notifyRecorder(t)
	l := startRawLoopgate(t, bin, []string{notifyEnv}, "--access-log=false", "--drain-timeout", "5s", appDir(t, `processesPerApplication="2"`, nil))
	oldPID := l.cmd.Process.Pid
	if code, body, err := get(client(t, 10*time.Second), "http://"+l.front+"/"); err != nil || code != 200 {
		t.Fatalf("first request: %d %q %v", code, body, err)
	}
	var before status.Snapshot
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		before = l.status(t)
		if n := len(backendPIDs(before)); n == 2 || time.Now().After(deadline) {
			break
		}
	}
	oldBackends := backendPIDs(before)
	loopgatetest.KillAtCleanup(t, oldBackends...)
	if before.Version != "zdt-old" || before.PID != oldPID || len(oldBackends) != 2 {
		t.Fatalf("before the upgrade: version %q pid %d backends %v", before.Version, before.PID, oldBackends)
	}

	// A WebSocket tunnel opened through the old process.
	ws, err := websocket.Dial("ws://"+l.front+"/ws", "", "http://"+l.front)
	if err != nil {
		t.Fatalf("WebSocket dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	echo := func(msg string) error {
		_ = ws.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := ws.Write([]byte(msg)); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(ws, got); err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}

	buildLoopgate(t, bin, "zdt-new")
	z := startGetLoad(t, 32, "http://"+l.front+"/", pidBody, reconnectEvery)
	time.Sleep(500 * time.Millisecond)
	out, err := exec.Command(bin, "upgrade", "--admin", l.admin, "--timeout", "60s").CombinedOutput()
	after := l.status(t)
	newPID := after.PID
	if newPID > 0 && newPID != oldPID {
		t.Cleanup(func() {
			syscall.Kill(newPID, syscall.SIGKILL)
			loopgatetest.WaitDead(t, 5*time.Second, newPID)
		})
	}
	loopgatetest.KillAtCleanup(t, backendPIDs(after)...)
	if err != nil {
		z.stop(t)
		t.Fatalf("loopgate upgrade: %v\n%s", err, out)
	}
	want := fmt.Sprintf("upgraded: pid %d -> %d, version zdt-old -> zdt-new", oldPID, newPID)
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("loopgate upgrade printed %q, want it to start with %q", out, want)
	}
	// Load on through the old process's drain, whose WebSocket tunnel
	// still carries messages (tunnels get --drain-timeout too).
	time.Sleep(1500 * time.Millisecond)
	if err := echo("during the old process's drain"); err != nil {
		t.Errorf("WebSocket tunnel through the draining old process: %v", err)
	}
	ws.Close()
	z.stop(t)
	t.Logf("loopgate upgrade under 32 connections reconnecting every %d requests: %v", reconnectEvery, z)
	z.check(t, 500)

	if after.Version != "zdt-new" || newPID == oldPID || newPID == 0 {
		t.Errorf("/status after the upgrade: version %q pid %d, want zdt-new from a new pid (old %d)", after.Version, newPID, oldPID)
	}
	newBackends := backendPIDs(after)
	if len(newBackends) != 2 {
		t.Errorf("new loopgate runs backends %v, want the 2 it started before taking over", newBackends)
	}
	for _, p := range newBackends {
		for _, o := range oldBackends {
			if p == o {
				t.Errorf("backend %d is the old loopgate's", p)
			}
		}
	}
	// The old loopgate drains, stops its backends and exits 0; its
	// backends' cgroup tree (with cgroup containment) goes with it.
	loopgatetest.WaitDead(t, 15*time.Second, oldPID)
	loopgatetest.WaitDead(t, 5*time.Second, oldBackends...)
	if c := l.waitLog(t, 0, func(x loopgatetest.Line) bool { return x.Str("event") == "containment" && x.Str("mode") == "cgroup" }); c != nil {
		dir := c.Str("cgroup")
		if !strings.HasSuffix(dir, "loopgate-"+strconv.Itoa(oldPID)) {
			t.Errorf("first containment line names %q, not the old loopgate's tree", dir)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("the old loopgate's cgroup %s is still there 5 s after it exited", dir)
				break
			}
		}
	}
	if ps := l.cmd.ProcessState; ps != nil && !ps.Success() {
		t.Errorf("old loopgate exited with %v", ps)
	}
	for _, ev := range []string{"upgrade", "upgrade_warm", "upgrade_done", "drain", "stopped"} {
		if l.waitLog(t, 0, func(x loopgatetest.Line) bool { return x.Str("event") == ev }) == nil {
			t.Errorf("no %q log event", ev)
		}
	}
	// systemd (Type=notify, NotifyAccess=main) heard READY=1 from the old
	// process, then MAINPID= of the new one with READY=1, and no STOPPING=1
	// from the old one, which would stop the service.
	if got := notes(); len(got) < 2 || !strings.HasPrefix(got[0], "READY=1\n") ||
		!strings.HasPrefix(got[1], fmt.Sprintf("MAINPID=%d\nREADY=1\n", newPID)) || strings.Contains(strings.Join(got, ""), "STOPPING=1") {
		t.Errorf("sd_notify messages %q: want READY=1, then MAINPID=%d with READY=1, and no STOPPING=1", got, newPID)
	}
	if after.Acceleration.Active {
		// Both loopgates attached their eBPF programs (bpf_link cgroup
		// attachments stack); the new one's redirect loopback traffic.
		if s := l.status(t); s.Acceleration.Redirected == 0 {
			t.Errorf("eBPF acceleration active in the new loopgate but nothing redirected: %+v", s.Acceleration)
		}
	}
	// The new one serves on, and the control socket was handed over too:
	// loopgate recycle reaches it after the old one is gone.
	if code, body, err := get(client(t, 10*time.Second), "http://"+l.front+"/"); err != nil || code != 200 {
		t.Errorf("after the upgrade: %d %q %v", code, body, err)
	}
	if out, err := exec.Command(bin, "recycle", "--control", l.control, "--timeout", "30s").CombinedOutput(); err != nil {
		t.Errorf("loopgate recycle after the upgrade: %v\n%s", err, out)
	} else {
		newBackends = backendPIDs(l.status(t))
		loopgatetest.KillAtCleanup(t, newBackends...)
	}
	syscall.Kill(newPID, syscall.SIGTERM)
	loopgatetest.WaitDead(t, 15*time.Second, newPID)
	loopgatetest.WaitDead(t, 5*time.Second, newBackends...)
}

// TestUpgradeFailureKeepsServing: a binary on disk that exits at once, or
// never becomes ready within --upgrade-timeout, fails the upgrade (through
// `loopgate upgrade` and SIGUSR2); the running loopgate serves on under
// load without a failed request, and says why in /status and the log.
func TestUpgradeFailureKeepsServing(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loopgate")
	buildLoopgate(t, bin, "zdt-old")
	l := startRawLoopgate(t, bin, nil, "--access-log=false", "--upgrade-timeout", "1s", appDir(t, ``, nil))
	pid := l.cmd.Process.Pid
	z := startGetLoad(t, 32, "http://"+l.front+"/", pidBody, reconnectEvery)

	client := filepath.Join(t.TempDir(), "loopgate-client")
	if err := os.Link(bin, client); err != nil {
		t.Fatal(err)
	}
	// A binary that exits at once.
	if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\necho broken build >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Rename(bin+".new", bin)
	out, err := exec.Command(client, "upgrade", "--admin", l.admin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "upgrade failed, still serving from pid "+strconv.Itoa(pid)) || !strings.Contains(string(out), "exit status 3") {
		t.Errorf("loopgate upgrade to a binary that exits: %v\n%s", err, out)
	}
	if s := l.status(t); s.PID != pid || !strings.Contains(s.LastUpgradeError, "exit status 3") {
		t.Errorf("/status after the failed upgrade: pid %d (want %d), last_upgrade_error %q", s.PID, pid, s.LastUpgradeError)
	}

	// A binary that never gets ready: killed after --upgrade-timeout.
	if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Rename(bin+".new", bin)
	l.cmd.Process.Signal(syscall.SIGUSR2)
	if l.waitLog(t, 10*time.Second, func(x loopgatetest.Line) bool {
		return x.Str("event") == "upgrade_failed" && strings.Contains(x.Str("error"), "timed out")
	}) == nil {
		t.Error("no upgrade_failed log line saying the new process timed out")
	}
	z.stop(t)
	t.Logf("two failed upgrades under 32 connections: %v", z)
	z.check(t, 200)
	if s := l.status(t); s.PID != pid || !strings.Contains(s.LastUpgradeError, "timed out") {
		t.Errorf("/status after the second failed upgrade: pid %d (want %d), last_upgrade_error %q", s.PID, pid, s.LastUpgradeError)
	}
}

// notifyRecorder is a NOTIFY_SOCKET that records every sd_notify message,
// STATUS= lines left out.
func notifyRecorder(t *testing.T) (env string, messages func() []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			var keep []string
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				if line != "" && !strings.HasPrefix(line, "STATUS=") {
					keep = append(keep, line+"\n")
				}
			}
			if len(keep) > 0 {
				mu.Lock()
				got = append(got, strings.Join(keep, ""))
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return "NOTIFY_SOCKET=" + path, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// writeRelease makes dir/releases/name with a web.config running the test
// backend with RELEASE=name (or the given web.config text, for a broken
// release) and returns its path.
func writeRelease(t *testing.T, base, name, attrs, webConfig string) string {
	t.Helper()
	dir := filepath.Join(base, "releases", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if webConfig != "" {
		if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(webConfig), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	writeConfig(t, dir, attrs, map[string]string{"RELEASE": name})
	return dir
}

// switchRelease points base/current at releases/name in one step, as
// deploy tools do (a new link renamed over the old one).
func switchRelease(t *testing.T, base, name string) {
	t.Helper()
	tmp := filepath.Join(base, "current.new")
	os.Remove(tmp)
	if err := os.Symlink(filepath.Join("releases", name), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
}

// TestReleaseSwitchUnderLoad serves an app from a symbolic link
// (current -> releases/1) under 32 connections of load, each dialling again
// every 8 requests, and switches the link: to release 2 (the app is
// recycled onto it, overlapped, and the old processes stop), to release 3
// whose web.config is invalid and release 4 whose process cannot start
// (neither takes traffic: release 2 serves on, the errors in /status and
// metrics). No request fails and no connection is refused.
func TestReleaseSwitchUnderLoad(t *testing.T) {
	base := t.TempDir()
	const attrs = `processesPerApplication="2"`
	writeRelease(t, base, "1", attrs, "")
	rel2 := writeRelease(t, base, "2", attrs, "")
	switchRelease(t, base, "1")
	current := filepath.Join(base, "current")
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", current}})
	c := client(t, 10*time.Second)
	release := func() string {
		t.Helper()
		code, body, err := get(c, l.URL("/env?name=RELEASE"))
		if err != nil || code != 200 {
			t.Fatalf("GET /env: %d %q %v", code, body, err)
		}
		return body
	}
	if r := release(); r != "1" {
		t.Fatalf("release %q before the switch, want 1", r)
	}
	old := l.WaitReady(t, 2, 10*time.Second)
	loopgatetest.KillAtCleanup(t, old...)

	z := startGetLoad(t, 32, l.URL("/"), pidBody, reconnectEvery)
	time.Sleep(500 * time.Millisecond)
	switchRelease(t, base, "2")
	for deadline := time.Now().Add(10 * time.Second); release() != "2"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("release 2 not serving 10 s after the switch")
		}
	}
	loopgatetest.WaitDead(t, 10*time.Second, old...)
	cur := l.WaitReady(t, 2, 10*time.Second)
	loopgatetest.KillAtCleanup(t, cur...)
	s := l.Status(t).Apps[0]
	if want, _ := filepath.EvalSymlinks(rel2); s.Release != want || s.RecyclesByReason["release"] != 1 {
		t.Errorf("/status after the switch: release %q (want %q), recycles by reason %v", s.Release, want, s.RecyclesByReason)
	}
	var info struct{ WD string }
	if _, body, err := get(c, l.URL("/info")); err == nil {
		json.Unmarshal([]byte(body), &info)
	}
	if want, _ := filepath.EvalSymlinks(rel2); info.WD != want {
		t.Errorf("new process works in %q, want the new release %q", info.WD, want)
	}

	// Release 3: an invalid web.config. Release 2 serves on.
	writeRelease(t, base, "3", "", "<configuration><system.webServer><aspNetCore processPath=\"x\" startupTimeLimit=\"99999\" /></system.webServer></configuration>")
	switchRelease(t, base, "3")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(l.Status(t).Apps[0].ConfigError, "new release"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no config error for release 3 after 10 s: %+v", l.Status(t).Apps[0])
		}
	}
	if r := release(); r != "2" {
		t.Errorf("release %q serving after switching to a broken release, want 2", r)
	}
	if v := metric(t, l, `loopgate_app_config_error{app="/"}`); v != 1 {
		t.Errorf("loopgate_app_config_error = %v during the broken release, want 1", v)
	}

	// Release 4: a valid web.config whose process exits at once, before
	// listening.
	writeRelease(t, base, "4", "", `<configuration><system.webServer><aspNetCore processPath="/bin/false" processesPerApplication="2" rapidFailsPerMinute="100" /></system.webServer></configuration>`)
	switchRelease(t, base, "4")
	for deadline := time.Now().Add(15 * time.Second); l.Status(t).Apps[0].StartFailures == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed start for release 4 after 15 s: %+v", l.Status(t).Apps[0])
		}
	}
	time.Sleep(300 * time.Millisecond)
	z.stop(t)
	t.Logf("release switches 1 -> 2 -> 3 (invalid web.config) -> 4 (process exits) under 32 connections reconnecting every %d requests: %v", reconnectEvery, z)
	z.check(t, 500)
	if r := release(); r != "2" {
		t.Errorf("release %q serving after switching to a release that cannot start, want 2", r)
	}
	s = l.Status(t).Apps[0]
	if s.LastStartError == "" || s.ConfigError != "" {
		t.Errorf("/status with release 4 failing: last start error %q, config error %q", s.LastStartError, s.ConfigError)
	}
	if v := metric(t, l, `loopgate_backend_start_failures_total{app="/"}`); v < 1 {
		t.Errorf("loopgate_backend_start_failures_total = %v, want >= 1", v)
	}
	for _, p := range cur {
		if !loopgatetest.Alive(p) {
			t.Errorf("release 2's process %d stopped although release 4 could not start", p)
		}
	}
}

// TestUpgradeRefusedWithFixedPort: an app running on an explicit
// ASPNETCORE_PORT could not start beside itself in the new loopgate, so the
// upgrade is refused with the reason, and the running loopgate serves on.
func TestUpgradeRefusedWithFixedPort(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loopgate")
	buildLoopgate(t, bin, "zdt-old")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if port < 1025 || port > 48000 {
		t.Skipf("kernel picked port %d, outside ASPNETCORE_PORT's range", port)
	}
	l := startRawLoopgate(t, bin, nil, "--access-log=false", appDir(t, ``, map[string]string{"ASPNETCORE_PORT": strconv.Itoa(port)}))
	if code, _, err := get(client(t, 10*time.Second), "http://"+l.front+"/"); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	loopgatetest.KillAtCleanup(t, backendPIDs(l.status(t))...)
	out, err := exec.Command(bin, "upgrade", "--admin", l.admin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), fmt.Sprintf("app / runs on the fixed ASPNETCORE_PORT %d", port)) {
		t.Errorf("loopgate upgrade with a fixed-port app running: %v\n%s", err, out)
	}
	if s := l.status(t); s.PID != l.cmd.Process.Pid || !strings.Contains(s.LastUpgradeError, "fixed ASPNETCORE_PORT") {
		t.Errorf("/status: pid %d (want the running %d), last_upgrade_error %q", s.PID, l.cmd.Process.Pid, s.LastUpgradeError)
	}
	if code, _, err := get(client(t, 10*time.Second), "http://"+l.front+"/"); err != nil || code != 200 {
		t.Errorf("after the refused upgrade: %d %v", code, err)
	}
}
