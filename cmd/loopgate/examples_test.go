package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// The README's recipes are the web.configs under examples/: each test runs
// one as a user would, where its runtime is installed (make suite-deps
// installs them from Debian; with LOOPGATE_REQUIRE_SUITES=1, as in CI, a
// missing runtime fails instead of skipping).

// needRuntime skips (or, in CI, fails) when program is not installed.
func needRuntime(t *testing.T, program, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(program); err == nil {
		return
	}
	if os.Getenv("LOOPGATE_REQUIRE_SUITES") == "1" {
		t.Fatalf("%s is not installed (apt-get install %s; make suite-deps does)", program, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s)", program, pkg)
}

// copyExampleDir copies the files of examples/name to a temporary
// directory, so a test never writes into the repository.
func copyExampleDir(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join("../../examples", name)
	dst := loopgatetest.CopyDir(t, src)
	t.Cleanup(func() { killInDir(dst) })
	return dst
}

// getWithXFF GETs url with an X-Forwarded-For a proxy in front of loopgate
// would have set, and returns the answer.
func getWithXFF(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.9")
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// stopCleanly SIGTERMs loopgate and requires exit 0 and the backend's
// graceful stop (exit status 0: it answered the shutdown request or
// SIGTERM and ended on its own).
func stopCleanly(t *testing.T, in *loopgatetest.Process, pid int) {
	t.Helper()
	in.Signal(syscall.SIGTERM)
	if code := in.Wait(30 * time.Second); code != 0 {
		t.Errorf("loopgate exit status %d after SIGTERM", code)
	}
	loopgatetest.WaitDead(t, 5*time.Second, pid)
	stop := in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "stop" })
	if stop == nil || stop.Str("exit_status") != "exit status 0" {
		t.Errorf("backend stop: %v, want exit status 0", stop)
	}
}

// TestExampleNode: examples/node reads PORT and BASE_PATH, set from
// %ASPNETCORE_PORT% and %ASPNETCORE_APPL_PATH%, sees the client as a bare
// address (forwardedForFormat="ip"), refuses requests without the pairing
// token and stops on loopgate's shutdown request.
func TestExampleNode(t *testing.T) {
	needRuntime(t, "node", "nodejs")
	dir := copyExampleDir(t, "node")
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"/node=" + dir}})
	code, body := getWithXFF(t, in.URL("/node/hello?x=1"))
	if want := "hello from node: path=/hello?x=1 base=/node client=127.0.0.1\n"; code != 200 || body != want {
		t.Fatalf("GET /node/hello: %d %q, want %q", code, body, want)
	}
	s := in.Status(t)
	p := s.Apps[0].Processes[0]
	// Straight to the backend, without the token: refused.
	if resp, err := httpc.Get("http://127.0.0.1:" + itoa(p.Port) + "/node/"); err != nil || resp.StatusCode != 400 {
		t.Errorf("a request without the pairing token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	stopCleanly(t, in, p.PID)
}

// TestExampleUvicorn: examples/uvicorn gets its port through UVICORN_PORT
// and, with forwardedForFormat="ip", a client host without a port.
func TestExampleUvicorn(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import uvicorn").Run(); err != nil {
		if os.Getenv("LOOPGATE_REQUIRE_SUITES") == "1" {
			t.Fatalf("Debian's uvicorn is not installed (apt-get install python3-uvicorn; make suite-deps does)")
		}
		t.Skip("Debian's uvicorn is not installed (apt-get install python3-uvicorn)")
	}
	dir := copyExampleDir(t, "uvicorn")
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{dir}})
	code, body := getWithXFF(t, in.URL("/hello"))
	// uvicorn walks X-Forwarded-For from the right past the addresses it
	// trusts (127.0.0.1, loopgate, and the test client's entry loopgate
	// appended) to the proxy's 198.51.100.9, port 0. With
	// forwardedForFormat="ipPort" loopgate's entry would be
	// "127.0.0.1:NNNNN", which uvicorn does not recognise as trusted and
	// would take for the client.
	if want := "hello from uvicorn: path=/hello client=198.51.100.9 port=0\n"; code != 200 || body != want {
		t.Fatalf("GET /hello: %d %q, want %q", code, body, want)
	}
	stopCleanly(t, in, in.Status(t).Apps[0].Processes[0].PID)
}

// TestExampleDotnetWebConfig: the web.config `dotnet publish` writes is
// read unchanged; check says what serve will run (dotnet itself is not
// installed here, so a stand-in is put on PATH).
func TestExampleDotnetWebConfig(t *testing.T) {
	dir := copyExampleDir(t, "dotnet")
	var out, errOut bytes.Buffer
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "dotnet"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code := runCheck([]string{"/shop=" + dir}, []string{"PATH=" + bin}, &out, &errOut)
	if want := "/shop -> " + dir + ": dotnet ./MyApp.dll (processes=1, hostingModel=inprocess, warnings=1)\n"; code != 0 || out.String() != want {
		t.Errorf("check: exit %d, stdout %q, want %q", code, out.String(), want)
	}
	if want := "warning: hostingModel=\"inprocess\": loopgate has no in-process hosting; the app runs out of process\n"; !strings.HasSuffix(errOut.String(), want) {
		t.Errorf("check stderr %q", errOut.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
