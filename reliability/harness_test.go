package reliability

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// backendPkg is the backend every web.config here runs.
const backendPkg = "github.com/loopgate/loopgate/internal/testbackend"

// TestMain builds loopgate and the test backend once, into a temporary directory,
// never into the repository (other work may be using bin/).
func TestMain(m *testing.M) { loopgatetest.Main(m, backendPkg) }

// long reports whether the full-length scenarios were asked for.
func long() bool { return os.Getenv("LOOPGATE_LONG") == "1" }

// appDir writes a web.config that runs the test backend with the given aspNetCore
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
`, loopgatetest.Program(t, backendPkg), attrs, vars.String())
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startLoopgate starts loopgate serve for these tests (see
// loopgatetest.Start) with an info-level log, as deployed (debug lines
// would swamp the load scenarios' logs), and up to 15 s to log ready.
// Its backends die with it (Pdeathsig), which the tests' KillAtCleanup
// calls double-check.
func startLoopgate(t *testing.T, o loopgatetest.Options) *loopgatetest.Process {
	t.Helper()
	o.Args = append([]string{"--log-level", "info"}, o.Args...)
	o.ReadyTimeout = 15 * time.Second
	return loopgatetest.Start(t, o)
}

// metric scrapes /metrics for one series, given as it is printed (name and
// labels), and returns its value; it fails the test when the series is
// missing.
func metric(t *testing.T, l *loopgatetest.Process, series string) float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + l.Admin + "/metrics")
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", sc.Text(), err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s series (read error: %v)", series, sc.Err())
	return 0
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
