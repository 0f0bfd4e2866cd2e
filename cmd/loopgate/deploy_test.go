package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

const unitPath = "../../deploy/systemd/loopgate.service"

// readUnit parses a systemd unit into section.key -> values (in order).
func readUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func one(t *testing.T, u map[string][]string, key, def string) string {
	t.Helper()
	v := u[key]
	switch len(v) {
	case 0:
		return def
	case 1:
		return v[0]
	}
	t.Fatalf("%s set %d times", key, len(v))
	return ""
}

var signalsByName = map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1}

// TestSystemdUnit checks deploy/systemd/loopgate.service: systemd accepts
// it, its command line is valid for this binary, its stop timeout covers the
// drain, and the signals it sends do what the unit expects of the binary.
func TestSystemdUnit(t *testing.T) {
	loopgateBin := loopgatetest.Loopgate(t)
	u := readUnit(t, unitPath)
	if got := one(t, u, "Service.Type", "simple"); got != "notify" {
		t.Errorf("Type=%s, want notify", got)
	}
	if got := one(t, u, "Service.KillMode", "control-group"); got != "mixed" && got != "control-group" {
		t.Errorf("KillMode=%s, want mixed or control-group (no backend may outlive the service)", got)
	}
	if got := one(t, u, "Service.RestartPreventExitStatus", ""); got != strconv.Itoa(exitUsage) {
		t.Errorf("RestartPreventExitStatus=%s, want %d (configuration errors)", got, exitUsage)
	}
	m := regexp.MustCompile(`^/bin/kill -([A-Z0-9]+) \$MAINPID$`).FindStringSubmatch(one(t, u, "Service.ExecReload", ""))
	if m == nil {
		t.Fatalf("ExecReload=%q, want /bin/kill -SIG $MAINPID", one(t, u, "Service.ExecReload", ""))
	}
	reloadSig, ok := signalsByName[m[1]]
	if !ok || reloadSig != syscall.SIGHUP {
		t.Errorf("ExecReload sends SIG%s; loopgate reloads on SIGHUP", m[1])
	}
	stopSig := signalsByName[strings.TrimPrefix(one(t, u, "Service.KillSignal", "SIGTERM"), "SIG")]
	if stopSig != syscall.SIGTERM && stopSig != syscall.SIGINT {
		t.Errorf("KillSignal=%s; loopgate drains on SIGTERM or SIGINT", one(t, u, "Service.KillSignal", ""))
	}

	// The command line parses, and the stop timeout covers the drain plus
	// the default shutdownTimeLimit (10 s) of the backends.
	exec0 := strings.Fields(one(t, u, "Service.ExecStart", ""))
	if len(exec0) < 2 || exec0[0] != "/usr/local/bin/loopgate" || exec0[1] != "serve" {
		t.Fatalf("ExecStart=%q", exec0)
	}
	cfg, err := parseServe(exec0[2:])
	if err != nil {
		t.Fatalf("ExecStart flags: %v", err)
	}
	stopTimeout, err := time.ParseDuration(one(t, u, "Service.TimeoutStopSec", "90s"))
	if err != nil {
		t.Fatal(err)
	}
	if stopTimeout <= cfg.DrainTimeout+10*time.Second {
		t.Errorf("TimeoutStopSec=%v does not cover --drain-timeout %v + 10 s of backend shutdown", stopTimeout, cfg.DrainTimeout)
	}

	// systemd itself accepts the unit (with ExecStart pointing at the binary
	// just built, since verify checks that it exists).
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		raw, _ := os.ReadFile(unitPath)
		dir := t.TempDir()
		copyPath := filepath.Join(dir, "loopgate.service")
		os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(raw), "/usr/local/bin/loopgate", loopgateBin)), 0o644)
		out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze not installed; unit syntax not verified by systemd")
	}

	// The binary behaves as the unit expects: READY=1 once serving, the
	// reload signal brackets a reload with RELOADING=1 ... READY=1, the stop
	// signal gives STOPPING=1 and a clean exit well within TimeoutStopSec.
	notifyEnv, next := notifySocket(t)
	in := loopgatetest.Start(t, loopgatetest.Options{Env: []string{notifyEnv}, Args: []string{backendApp(t, "")}})
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("after start: %q, want READY=1", msg)
	}
	in.Signal(reloadSig)
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "RELOADING=1\n") {
		t.Errorf("after the reload signal: %q, want RELOADING=1", msg)
	}
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "READY=1\n") {
		t.Errorf("after the reload: %q, want READY=1", msg)
	}
	in.Signal(stopSig)
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "STOPPING=1\n") {
		t.Errorf("after the stop signal: %q, want STOPPING=1", msg)
	}
	if code := in.Wait(stopTimeout); code != exitOK {
		t.Errorf("exit status %d after KillSignal, want 0", code)
	}
}

// TestKubernetesTimings keeps the Deployment's numbers consistent with the
// drain: readiness on /healthz at the admin port, and a grace period that
// covers the preStop sleep, the drain and the backends' shutdown.
func TestKubernetesTimings(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/loopgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(raw)
	num := func(re string) int {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(y)
		if m == nil {
			t.Fatalf("deployment lacks %s", re)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	grace := num(`terminationGracePeriodSeconds: (\d+)`)
	sleep := num(`preStop:\s+(?:#.*\s+)*sleep:\s+seconds: (\d+)`)
	drain := num(`--drain-timeout=(\d+)s`)
	if grace <= sleep+drain+10 {
		t.Errorf("terminationGracePeriodSeconds %d does not cover preStop %d s + drain %d s + 10 s backend shutdown", grace, sleep, drain)
	}
	adminPort := num(`--admin=:(\d+)`)
	if containerPort := num(`name: admin\s+containerPort: (\d+)`); containerPort != adminPort {
		t.Errorf("admin containerPort %d, --admin port %d", containerPort, adminPort)
	}
	if !regexp.MustCompile(`readinessProbe:\s+httpGet:\s+path: /healthz\s+port: admin`).MatchString(y) {
		t.Error("readiness probe is not GET /healthz on the admin port")
	}
	// The args are a valid serve command line.
	var args []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- (--[a-z-]+=\S*|/app|serve)$`).FindAllStringSubmatch(y, -1) {
		args = append(args, m[1])
	}
	if len(args) < 2 || args[0] != "serve" {
		t.Fatalf("container args %q", args)
	}
	if _, err := parseServe(args[1:]); err != nil {
		t.Errorf("container args %q: %v", args, err)
	}
}
