package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/gobuild"
)

// testBackend is the compiled internal/testbackend (the module's one
// scripted test backend), built once by TestMain.
var testBackend string

func TestMain(m *testing.M) {
	if os.Getenv("LG_HELPER_PARENT") == "1" {
		testBackend = os.Getenv("LG_BACKEND")
		os.Exit(m.Run())
	}
	if os.Getenv("LG_HELPER_AMBIENT") == "1" {
		os.Exit(m.Run()) // needs no test backend
	}
	dir, err := os.MkdirTemp("", "supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testBackend = filepath.Join(dir, "testbackend")
	if err := gobuild.Build(testBackend, "github.com/loopgate/loopgate/internal/testbackend"); err != nil {
		fmt.Fprintf(os.Stderr, "building the test backend: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// realSpec is a spec that runs the test backend with the given TB_*
// settings ("NAME=value").
func realSpec(t testing.TB, settings ...string) *configload.AppSpec {
	t.Helper()
	dir := t.TempDir()
	spec := &configload.AppSpec{
		Dir:                     dir,
		ConfigFile:              filepath.Join(dir, "web.config"),
		VirtualPath:             "/",
		ProcessPath:             testBackend,
		StartupTimeLimit:        10 * time.Second,
		ShutdownTimeLimit:       5 * time.Second,
		RapidFailsPerMinute:     10,
		RequestTimeout:          2 * time.Minute,
		StdoutLogFile:           filepath.Join(dir, "logs", "stdout"),
		ProcessesPerApplication: 1,
		ConsoleRedirection:      true,
		MaxAllowedContentLength: 30000000,
		PingInterval:            30 * time.Second,
		PingResponseTime:        90 * time.Second,
		QueueLength:             1000,
	}
	for _, s := range settings {
		name, value, _ := strings.Cut(s, "=")
		spec.Environment = append(spec.Environment, configload.EnvVar{Name: name, Value: value})
	}
	return spec
}

func realSup(t *testing.T, spec *configload.AppSpec) (*Supervisor, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := New([]*configload.AppSpec{spec}, Options{Logger: zerolog.New(logs), Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if n := s.liveCount(); n != 0 {
			t.Errorf("%d processes left after Shutdown", n)
		}
	})
	return s, logs
}

type backendInfo struct {
	PID   int               `json:"pid"`
	Port  string            `json:"port"`
	Token string            `json:"token"`
	Args  []string          `json:"args"`
	WD    string            `json:"wd"`
	Env   map[string]string `json:"env"`
}

// backendGet sends GET path straight to p with its pairing token, as
// loopgate would.
func backendGet(p *Process, path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.Addr()+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("MS-ASPNETCORE-TOKEN", p.Token())
	c := http.Client{Timeout: 5 * time.Second}
	return c.Do(req)
}

func getInfo(t *testing.T, p *Process) backendInfo {
	t.Helper()
	resp, err := backendGet(p, "/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info backendInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info
}

func acquireReal(t *testing.T, a *App) (*Process, Outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Acquire(ctx)
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// eventually polls cond every 10 ms for up to limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRealStartEnvironmentAndCrashRestart(t *testing.T) {
	spec := realSpec(t, "TB_PRINT=hello")
	s, logs := realSup(t, spec)
	a := s.Apps()[0]
	p, o := acquireReal(t, a)
	if o != Ready {
		t.Fatalf("Acquire: %v (%+v)", o, a.Status())
	}
	info := getInfo(t, p)
	p.Release()
	if info.PID != p.PID() || info.Port != strconv.Itoa(p.Port()) || info.Token != p.Token() || info.WD != spec.Dir {
		t.Errorf("backend saw %+v; process %d %d %s", info, p.PID(), p.Port(), p.Token())
	}
	for k, v := range map[string]string{
		"ASPNETCORE_APPL_PATH": "/", "ASPNETCORE_IIS_HTTPAUTH": "anonymous;", "ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED": "true",
		"ASPNETCORE_IIS_PHYSICAL_PATH": spec.Dir + "/", "TB_PRINT": "hello",
	} {
		if info.Env[k] != v {
			t.Errorf("%s=%q, want %q", k, info.Env[k], v)
		}
	}
	if !strings.HasSuffix(info.Env["ASPNETCORE_HOSTINGSTARTUPASSEMBLIES"], "Microsoft.AspNetCore.Server.IISIntegration") {
		t.Errorf("ASPNETCORE_HOSTINGSTARTUPASSEMBLIES=%q", info.Env["ASPNETCORE_HOSTINGSTARTUPASSEMBLIES"])
	}
	eventually(t, 5*time.Second, "output relayed", func() bool {
		return strings.Contains(logs.String(), `"pid":`+strconv.Itoa(p.PID())+`,"stream":"stderr","message":"err: hello"`)
	})

	// Crash: restarted at once with a new pid, port and token.
	backendGet(p, "/exit?code=3")
	eventually(t, 10*time.Second, "restart after the crash", func() bool {
		st := a.Status()
		return st.Crashes == 1 && st.State == StateReady && st.Processes[0].PID != p.PID()
	})
	p2, o := acquireReal(t, a)
	if o != Ready {
		t.Fatalf("Acquire after the crash: %v", o)
	}
	info2 := getInfo(t, p2)
	p2.Release()
	if info2.PID == p.PID() || p2.Port() == p.Port() || info2.Token == p.Token() || info2.PID != p2.PID() {
		t.Errorf("restart kept pid %d / port %d / token: %+v", p.PID(), p.Port(), info2)
	}
	if st := a.Status(); st.Processes[0].LastExit != "exit status 3" || st.Restarts != 1 {
		t.Errorf("status %+v", st)
	}
	if alive(p.PID()) {
		t.Errorf("crashed process %d still alive", p.PID())
	}
}

var startPID = regexp.MustCompile(`"event":"start","pid":(\d+)`)

func TestRealNeverListeningFailsBoundedAndLeavesNothing(t *testing.T) {
	spec := realSpec(t, "TB_NO_LISTEN=1", "TB_PRINT=waiting forever")
	spec.StartupTimeLimit = time.Second
	s, logs := realSup(t, spec)
	a := s.Apps()[0]
	start := time.Now()
	if p, o := acquireReal(t, a); o != StartFailed || p != nil {
		t.Fatalf("Acquire: %v", o)
	}
	if d := time.Since(start); d < 2*time.Second || d > 5*time.Second {
		t.Errorf("two 1 s attempts took %v", d)
	}
	m := startPID.FindAllStringSubmatch(logs.String(), -1)
	if len(m) != 2 {
		t.Fatalf("%d processes started, want 2:\n%s", len(m), logs.String())
	}
	for _, sub := range m {
		pid, _ := strconv.Atoi(sub[1])
		eventually(t, 5*time.Second, "process "+sub[1]+" gone", func() bool { return !alive(pid) })
	}
	if n := s.liveCount(); n != 0 {
		t.Errorf("%d processes tracked", n)
	}
	containsAll(t, "log", logs.String(), `"event":"start_failed"`, `"exit_status":"signal: killed"`,
		`out: waiting forever`, `"command":"`+testBackend)
}

func TestRealShutdownIgnoredIsKilledAtShutdownTimeLimit(t *testing.T) {
	spec := realSpec(t, "TB_SHUTDOWN=ignore", "TB_IGNORE_TERM=1")
	spec.ShutdownTimeLimit = time.Second
	logs := &syncBuffer{}
	s, err := New([]*configload.AppSpec{spec}, Options{Logger: zerolog.New(logs), Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	p, o := acquireReal(t, s.Apps()[0])
	if o != Ready {
		s.Kill()
		t.Fatalf("Acquire: %v", o)
	}
	p.Release()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Errorf("shutdown took %v, want about shutdownTimeLimit (1s)", d)
	}
	if alive(p.PID()) {
		t.Errorf("process %d survived", p.PID())
	}
	containsAll(t, "log", logs.String(), `"event":"kill"`, `"exit_status":"signal: killed"`)
}

func TestRealGracefulShutdownRequest(t *testing.T) {
	spec := realSpec(t)
	spec.VirtualPath = "/api"
	logs := &syncBuffer{}
	s, err := New([]*configload.AppSpec{spec}, Options{Logger: zerolog.New(logs), Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	p, o := acquireReal(t, s.Apps()[0])
	if o != Ready {
		s.Kill()
		t.Fatalf("Acquire: %v", o)
	}
	p.Release()
	start := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The backend answers 202 on /api/iisintegration and exits 0 itself.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("graceful shutdown took %v", d)
	}
	containsAll(t, "log", logs.String(), `"event":"stop"`, `"exit_status":"exit status 0"`)
	if alive(p.PID()) {
		t.Errorf("process %d survived", p.PID())
	}
}

func TestRealStdoutLogFileAndPortArgument(t *testing.T) {
	spec := realSpec(t, "TB_PRINT=to the file")
	spec.StdoutLogEnabled = true
	spec.Arguments = []string{"-port", "%ASPNETCORE_PORT%"}
	s, logs := realSup(t, spec)
	p, o := acquireReal(t, s.Apps()[0])
	if o != Ready {
		t.Fatalf("Acquire: %v", o)
	}
	info := getInfo(t, p)
	p.Release()
	if strings.Join(info.Args, " ") != "-port "+strconv.Itoa(p.Port()) {
		t.Errorf("args %q", info.Args)
	}
	files, _ := filepath.Glob(spec.StdoutLogFile + "_*_" + strconv.Itoa(p.PID()) + ".log")
	if len(files) != 1 {
		t.Fatalf("stdout log files %v", files)
	}
	// The start line says where the output goes.
	containsAll(t, "log", logs.String(), `"message":"backend started; its stdout and stderr go to `+files[0]+`"`, `"stdout_log":"`+files[0]+`"`)
	eventually(t, 5*time.Second, "both streams in the stdout log", func() bool {
		data, _ := os.ReadFile(files[0])
		return strings.Contains(string(data), "out: to the file") && strings.Contains(string(data), "err: to the file")
	})
}

var childPID = regexp.MustCompile(`"message":"child-pid (\d+)"`)

func TestRealProcessGroupIsKilled(t *testing.T) {
	spec := realSpec(t, "TB_CHILD=1")
	s, logs := realSup(t, spec)
	p, o := acquireReal(t, s.Apps()[0])
	if o != Ready {
		t.Fatalf("Acquire: %v", o)
	}
	p.Release()
	var child int
	eventually(t, 5*time.Second, "child pid in the log", func() bool {
		m := childPID.FindStringSubmatch(logs.String())
		if m != nil {
			child, _ = strconv.Atoi(m[1])
		}
		return m != nil
	})
	if !alive(child) {
		t.Fatal("the backend's child is not running")
	}
	// The backend exits by itself; its leftover child must not linger.
	backendGet(p, "/exit?code=0")
	eventually(t, 5*time.Second, "the backend's child killed with its group", func() bool { return !alive(child) })
}

// TestHelperParent is not a test: TestRealParentKilledLeavesNoChild runs
// the test binary with LG_HELPER_PARENT=1 to get a loopgate-like parent
// that it can SIGKILL.
func TestHelperParent(t *testing.T) {
	if os.Getenv("LG_HELPER_PARENT") != "1" {
		t.Skip("helper process for TestRealParentKilledLeavesNoChild")
	}
	spec := realSpec(t)
	s, err := New([]*configload.AppSpec{spec}, Options{Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	p, o := acquireReal(t, s.Apps()[0])
	if o != Ready {
		t.Fatalf("Acquire: %v", o)
	}
	fmt.Printf("child %d\n", p.PID())
	time.Sleep(30 * time.Second) // until the test kills us
	s.Kill()
}

func TestRealParentKilledLeavesNoChild(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperParent$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "LG_HELPER_PARENT=1", "LG_BACKEND="+testBackend)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "child ") {
				lines <- sc.Text()
				break
			}
		}
		for sc.Scan() {
		}
	}()
	var pid int
	select {
	case l := <-lines:
		fmt.Sscanf(l, "child %d", &pid)
	case <-time.After(20 * time.Second):
		t.Fatal("the helper parent never started its backend")
	}
	if !alive(pid) {
		t.Fatalf("backend %d not running", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	eventually(t, 5*time.Second, "the backend dies with its SIGKILLed parent", func() bool { return !alive(pid) })
}

func TestRealWatchAppOfflineAndWebConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := func(limit int) {
		writeFile(t, filepath.Join(dir, "web.config"), fmt.Sprintf(
			`<configuration><system.webServer><aspNetCore processPath="%s" shutdownTimeLimit="%d"/></system.webServer></configuration>`, testBackend, limit))
	}
	cfg(5)
	spec, err := configload.Load(dir, configload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, logs := realSup(t, spec)
	a := s.Apps()[0]
	p, o := acquireReal(t, a)
	if o != Ready {
		t.Fatalf("Acquire: %v", o)
	}
	p.Release()

	// web.config rewritten: noticed by inotify, recycled to a new process.
	cfg(4)
	eventually(t, 10*time.Second, "recycle after the web.config change", func() bool {
		st := a.Status()
		return st.Recycles == 1 && st.State == StateReady && st.Processes[0].PID != p.PID()
	})
	eventually(t, 10*time.Second, "the old process stopped", func() bool { return !alive(p.PID()) })

	// app_offline.htm dropped: offline with its content, backend stopped.
	writeFile(t, filepath.Join(dir, "app_offline.htm"), "<p>back soon</p>")
	// The page is re-read on every change event, so it settles on the
	// complete file even if the creation event was seen before the write.
	eventually(t, 10*time.Second, "offline with the page", func() bool {
		return a.Status().State == StateOffline && string(a.OfflinePage()) == "<p>back soon</p>"
	})
	if _, o := acquireReal(t, a); o != Offline {
		t.Fatalf("Acquire: %v", o)
	}
	eventually(t, 10*time.Second, "no process while offline", func() bool { return s.liveCount() == 0 })
	os.Remove(filepath.Join(dir, "app_offline.htm"))
	eventually(t, 10*time.Second, "online", func() bool { return a.Status().State == StateIdle })
	p2, o := acquireReal(t, a)
	if o != Ready {
		t.Fatalf("Acquire after app_offline.htm went away: %v", o)
	}
	p2.Release()
	containsAll(t, "log", logs.String(), `"event":"recycle"`, `"event":"app_offline"`, `"event":"app_online"`)
}

// TestHelperAmbient is not a test: TestRealBackendGetsNoAmbientCaps runs the
// test binary with LG_HELPER_AMBIENT=1 under setpriv, with an ambient
// capability, to get a loopgate-like parent that holds one.
func TestHelperAmbient(t *testing.T) {
	if os.Getenv("LG_HELPER_AMBIENT") != "1" {
		t.Skip("helper process for TestRealBackendGetsNoAmbientCaps")
	}
	own, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	p, err := realOS{}.Spawn(&Cmd{Path: "/bin/sh", Args: []string{"-c", "grep ^CapAmb: /proc/self/status"}, Output: true})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr())
	child, _ := io.ReadAll(p.Stdout())
	p.Wait()
	fmt.Printf("parent %s\nchild %s\n", regexp.MustCompile(`CapAmb:\s*(\S+)`).FindSubmatch(own)[1], strings.TrimSpace(strings.TrimPrefix(string(child), "CapAmb:")))
}

// TestRealBackendGetsNoAmbientCaps: capabilities loopgate holds as ambient
// (systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE, or the eBPF set) do
// not pass to the backends it starts.
func TestRealBackendGetsNoAmbientCaps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raising an ambient capability for the helper parent needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("setpriv (util-linux) not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service",
		os.Args[0], "-test.run=^TestHelperAmbient$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LG_HELPER_AMBIENT=1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^parent (\S+)\nchild (\S+)$`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("helper output:\n%s", out)
	}
	const netBindService = 1 << 10
	parent, _ := strconv.ParseUint(m[1], 16, 64)
	child, _ := strconv.ParseUint(m[2], 16, 64)
	if parent&netBindService == 0 {
		t.Fatalf("the helper parent has no ambient CAP_NET_BIND_SERVICE (CapAmb %s): the test proves nothing", m[1])
	}
	if child != 0 {
		t.Errorf("the backend inherited ambient capabilities %s from loopgate's %s", m[2], m[1])
	}
}
