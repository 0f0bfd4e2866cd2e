package reliability

import (
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

// requireRootSetpriv skips a test that needs root and setpriv(1).
func requireRootSetpriv(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can start processes as another user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv(1)")
	}
}

// openDir makes a temporary directory anyone may enter (t.TempDir's
// parents are 0700), removed after the test.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "lgid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExe copies the program at src into dir, runnable by anyone.
func copyExe(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// identityApp writes, in a directory nobody may enter, a web.config that
// runs a copy of the test backend with userName and groupName (each left
// out when empty) and its stdout log under logs/.
func identityApp(t *testing.T, userName, groupName string) string {
	t.Helper()
	dir := openDir(t)
	exe := copyExe(t, loopgatetest.Program(t, backendPkg), dir)
	var hs strings.Builder
	for _, s := range [][2]string{{"userName", userName}, {"groupName", groupName}} {
		if s[1] != "" {
			fmt.Fprintf(&hs, "        <handlerSetting name=%q value=%q />\n", s[0], s[1])
		}
	}
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q shutdownTimeLimit="2" startupTimeLimit="10" stdoutLogEnabled="true" stdoutLogFile="./logs/stdout">
      <environmentVariables>
        <environmentVariable name="TB_PRINT" value="hello from the app" />
      </environmentVariables>
      <handlerSettings>
%s      </handlerSettings>
    </aspNetCore>
  </system.webServer>
</configuration>
`, exe, hs.String())
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// procIDs returns the Uid, Gid and Groups lines of /proc/PID/status.
func procIDs(t *testing.T, pid int) (uid, gid, groups string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.Join(strings.Fields(v), " ")
		switch k {
		case "Uid":
			uid = v
		case "Gid":
			gid = v
		case "Groups":
			groups = v
		}
	}
	return uid, gid, groups
}

// TestIdentity: with userName nobody and groupName nogroup, a backend
// started by a root loopgate runs as 65534:65534 (real, effective, saved
// and filesystem ids) without root's supplementary groups, with HOME, USER
// and LOGNAME of nobody; its stdout log is written; it is in its cgroup;
// and loopgate's stop stops it.
func TestIdentity(t *testing.T) {
	requireRootSetpriv(t)
	dir := identityApp(t, "nobody", "nogroup")
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	c := client(t, 20*time.Second)
	code, body, err := get(c, l.URL("/"))
	if err != nil || code != 200 {
		t.Fatalf("GET /: %d %q %v", code, body, err)
	}
	pids := l.WaitReady(t, 1, 10*time.Second)
	loopgatetest.KillAtCleanup(t, pids...)
	uid, gid, groups := procIDs(t, pids[0])
	t.Logf("backend %d: Uid %s, Gid %s, Groups %q", pids[0], uid, gid, groups)
	if uid != "65534 65534 65534 65534" || gid != "65534 65534 65534 65534" || groups != "" {
		t.Errorf("backend runs as Uid %q Gid %q Groups %q; want nobody:nogroup everywhere and no groups", uid, gid, groups)
	}
	for name, want := range map[string]string{"USER": "nobody", "LOGNAME": "nobody", "HOME": "/nonexistent"} {
		if _, v, _ := get(c, l.URL("/env?name="+name)); v != want {
			t.Errorf("%s=%q in the backend, want %q", name, v, want)
		}
	}
	if ev := l.WaitLog(time.Second, func(x loopgatetest.Line) bool { return x.Str("event") == "start" }); ev == nil || ev.Str("user") != "nobody (65534:65534)" {
		t.Errorf("start log line %v, want user nobody (65534:65534)", ev)
	}
	// The stdout log, written by loopgate from the backend's pipe.
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs, _ := filepath.Glob(filepath.Join(dir, "logs", "stdout_*.log"))
		var data []byte
		if len(logs) == 1 {
			data, _ = os.ReadFile(logs[0])
		}
		if strings.Contains(string(data), "out: hello from the app") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stdout log %v holds %q", logs, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Its cgroup, when loopgate has cgroups here.
	if ev := l.WaitLog(0, func(x loopgatetest.Line) bool { return x.Str("event") == "containment" }); ev != nil && ev.Str("cgroup") != "" {
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pids[0]))
		if !strings.Contains(string(cg), "/"+filepath.Base(ev.Str("cgroup"))+"/") {
			t.Errorf("backend's cgroup %q is not below loopgate's %s", cg, ev.Str("cgroup"))
		}
	}
	l.Signal(syscall.SIGTERM)
	if code := l.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	loopgatetest.WaitDead(t, 2*time.Second, pids...)
}

// TestIdentityErrors: a user or group that does not exist is an error of
// loopgate check and of serve's start, with the file and the setting; and
// a loopgate that is not root cannot use userName at all (check and serve
// run as nobody).
func TestIdentityErrors(t *testing.T) {
	requireRootSetpriv(t)
	for _, c := range []struct{ user, group, want string }{
		{"nosuchuser-lg", "", `userName="nosuchuser-lg": no such user`},
		{"nobody", "nosuchgroup-lg", `groupName="nosuchgroup-lg": no such group`},
		{"61234", "", `userName="61234": uid 61234 has no passwd entry to take the group from: give groupName too`},
	} {
		dir := identityApp(t, c.user, c.group)
		code, _, errText := loopgateCmd(t, "check", dir)
		if code != 2 || !strings.Contains(errText, filepath.Join(dir, "web.config")+": "+c.want) {
			t.Errorf("check with userName %q groupName %q: exit %d, stderr %q; want 2 and %q", c.user, c.group, code, errText, c.want)
		}
		code, _, errText = loopgateCmd(t, "serve", "--listen", "127.0.0.1:0", "--admin", "", "--control", "", dir)
		if code != 2 || !strings.Contains(errText, c.want) {
			t.Errorf("serve with userName %q groupName %q: exit %d, stderr %q", c.user, c.group, code, errText)
		}
	}
	// A numeric uid with a groupName is fine.
	if code, out, errText := loopgateCmd(t, "check", identityApp(t, "61234", "61234")); code != 0 {
		t.Errorf("check with uid 61234 gid 61234: exit %d, %q %q", code, out, errText)
	}

	// Not root.
	dir := identityApp(t, "daemon", "")
	exe := copyExe(t, loopgatetest.Loopgate(t), dir)
	wrap := []string{"setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"}
	want := `userName="daemon": loopgate runs as uid 65534, not as root, so it cannot start the app's processes as uid 1 gid 1 (run loopgate as root, or remove userName and groupName)`
	code, _, errText := runAs(t, wrap, exe, "check", dir)
	if code != 2 || !strings.Contains(errText, want) {
		t.Errorf("check as nobody: exit %d, stderr %q; want 2 and %q", code, errText, want)
	}
	code, _, errText = runAs(t, wrap, exe, "serve", "--listen", "127.0.0.1:0", "--admin", "", "--control", "", dir)
	if code != 2 || !strings.Contains(errText, want) {
		t.Errorf("serve as nobody: exit %d, stderr %q; want 2 and %q", code, errText, want)
	}
	// Its own user and group are no switch, and fine.
	if code, out, errText := runAs(t, wrap, exe, "check", identityApp(t, "nobody", "nogroup")); code != 0 {
		t.Errorf("check as nobody of userName nobody: exit %d, %q %q", code, out, errText)
	}
}
