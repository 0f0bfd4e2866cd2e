package main

import (
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

// portApp is a Python backend configured the way HttpPlatformHandler users
// and most Node/Python servers are: it reads its port from PORT and its
// mount point from SCRIPT_NAME, and never looks at ASPNETCORE_PORT. It exits
// with a message when PORT is not a number.
const portApp = `import os, sys, http.server
port = os.environ.get("PORT", "")
if not port.isdigit():
    sys.exit("PORT=%r is not a port number" % port)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("PORT=%s SCRIPT_NAME=%s" % (port, os.environ.get("SCRIPT_NAME", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(port)), H).serve_forever()
`

// pythonApp writes an app directory holding script as app.py and a
// web.config that runs it with python3 and the given aspNetCore children.
func pythonApp(t *testing.T, script, children string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	cfg := `<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath="` + py + `" arguments="-u app.py" startupTimeLimit="20">
` + children + `
    </aspNetCore>
  </system.webServer>
</configuration>
`
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killInDir(dir) })
	return dir
}

// killInDir SIGKILLs every process whose working directory is dir: a
// backend loopgate left behind (it never should) does not outlive the test.
func killInDir(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd"); cwd == dir {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// TestEnvironmentPerStartVariables: PORT=%ASPNETCORE_PORT% and
// SCRIPT_NAME=%ASPNETCORE_APPL_PATH% in <environmentVariables> reach a real
// backend as this start's port and the app's virtual path.
func TestEnvironmentPerStartVariables(t *testing.T) {
	dir := pythonApp(t, portApp, `      <environmentVariables>
        <environmentVariable name="PORT" value="%ASPNETCORE_PORT%" />
        <environmentVariable name="SCRIPT_NAME" value="%aspnetcore_appl_path%" />
      </environmentVariables>`)
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"/py=" + dir}})
	code, body := get(t, in.URL("/py/"))
	if code != 200 {
		t.Fatalf("GET /py/: %d %q", code, body)
	}
	s := in.Status(t)
	if len(s.Apps) != 1 || len(s.Apps[0].Processes) != 1 {
		t.Fatalf("/status apps: %+v", s.Apps)
	}
	port := s.Apps[0].Processes[0].Port
	if want := "PORT=" + strconv.Itoa(port) + " SCRIPT_NAME=/py"; body != want {
		t.Errorf("the app saw %q, want %q", body, want)
	}
	// A restart gets a new port, and the variable follows it.
	pid := s.Apps[0].Processes[0].PID
	syscall.Kill(pid, syscall.SIGKILL)
	loopgatetest.WaitDead(t, 5*time.Second, pid)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body = get(t, in.URL("/py/"))
		s = in.Status(t)
		if p := s.Apps[0].Processes; code == 200 && len(p) == 1 && p[0].PID != pid && p[0].PID > 0 {
			if want := "PORT=" + strconv.Itoa(p[0].Port); !strings.HasPrefix(body, want+" ") {
				t.Errorf("after a restart the app saw %q, want %q", body, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new backend 20 s after killing %d: %d %q", pid, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAdminHostNames: serve passes --admin-host to the admin endpoint's
// DNS rebinding check; any other name is refused, an IP address is not.
func TestAdminHostNames(t *testing.T) {
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--admin-host", "loopgate.test", pythonApp(t, portApp, "")}})
	for host, want := range map[string]int{"loopgate.test:1": 200, in.Admin: 200, "rebound.example": 403} {
		req, _ := http.NewRequest("GET", "http://"+in.Admin+"/status", nil)
		req.Host = host
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /status with Host %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestAccessLogOfLoopgatesOwnAnswers: a 502.5 that loopgate answers itself
// is logged with the size of the page it sent and without a pid (no
// backend served it), and so is the 503 of app_offline.htm.
func TestAccessLogOfLoopgatesOwnAnswers(t *testing.T) {
	dir := pythonApp(t, "import sys\nsys.exit('no luck')\n", "")
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{dir}})
	isAccess := func(l loopgatetest.Line) bool { return l.Str("event") == "access" }
	// request GETs / and returns the answer and its access line.
	request := func() (int, string, loopgatetest.Line) {
		before := in.Count(isAccess)
		code, body := get(t, in.URL("/"))
		seen := 0
		l := in.WaitLog(10*time.Second, func(l loopgatetest.Line) bool {
			if isAccess(l) {
				seen++
			}
			return isAccess(l) && seen == before+1
		})
		if l == nil {
			t.Fatalf("no access line for request %d", before+1)
		}
		return code, body, l
	}
	code, body, l := request()
	if code != 502 || !strings.Contains(body, "502.5") {
		t.Fatalf("GET /: %d %q", code, body)
	}
	if l["status"] != float64(502) || l["bytes"] != float64(len(body)) || l["pid"] != nil {
		t.Errorf("access line of the 502.5 (%d bytes): %v", len(body), l)
	}
	offline := "<html>down for a moment</html>"
	if err := os.WriteFile(filepath.Join(dir, "app_offline.htm"), []byte(offline), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, l = request()
		if code == 503 && body == offline {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offline page not served: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l["status"] != float64(503) || l["bytes"] != float64(len(offline)) || l["pid"] != nil {
		t.Errorf("access line of the 503: %v", l)
	}
}

// echoApp prints one line per request to stdout and answers 200.
const echoApp = `import os, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        print("request " + self.path, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["ASPNETCORE_PORT"])), H).serve_forever()
`

// TestSIGUSR1StartsNewStdoutLogFiles: with stdoutLogEnabled, the start
// line names the file, and SIGUSR1 (logrotate's postrotate) has the output
// continue in a new file from the next line on.
func TestSIGUSR1StartsNewStdoutLogFiles(t *testing.T) {
	dir := pythonApp(t, echoApp, "")
	cfg := filepath.Join(dir, "web.config")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(b), `startupTimeLimit="20"`, `startupTimeLimit="20" stdoutLogEnabled="true" stdoutLogFile=".\logs\out"`, 1)), 0o644)
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{dir}})
	if code, _ := get(t, in.URL("/one")); code != 200 {
		t.Fatalf("GET /one: %d", code)
	}
	start := in.WaitLog(5*time.Second, func(l loopgatetest.Line) bool { return l.Str("event") == "start" })
	first := start.Str("stdout_log")
	if !strings.HasPrefix(first, filepath.Join(dir, "logs", "out_")) || !strings.HasSuffix(start.Str("message"), "go to "+first) {
		t.Fatalf("start line %v", start)
	}
	waitContent := func(file, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _ := os.ReadFile(file)
			if string(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %q, want %q", file, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitContent(first, "request /one\n")
	in.Signal(syscall.SIGUSR1)
	if in.WaitLog(5*time.Second, func(l loopgatetest.Line) bool { return l.Str("event") == "stdout_log_rotate" }) == nil {
		t.Fatal("no stdout_log_rotate line after SIGUSR1")
	}
	if code, _ := get(t, in.URL("/two")); code != 200 {
		t.Fatalf("GET /two: %d", code)
	}
	waitContent(strings.TrimSuffix(first, ".log")+".1.log", "request /two\n")
	waitContent(first, "request /one\n")
}

// TestAdminStatusPage: serve's admin endpoint shows the HTML status page at
// "/", with the mounted app.
func TestAdminStatusPage(t *testing.T) {
	dir := pythonApp(t, portApp, "")
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"/py=" + dir}})
	resp, err := httpc.Get("http://" + in.Admin + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(page, `<h2>/py <span class="badge idle">idle</span></h2>`) || !strings.Contains(page, `<p class="dir">`+dir+`</p>`) {
		t.Errorf("GET /: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}
}
