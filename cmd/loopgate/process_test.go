package main

// Tests that run the real loopgate binary as a subprocess against a test
// backend (internal/testbackend) or the example app: the drain on SIGTERM with a
// request in flight, sd_notify, SIGHUP, SIGUSR1, SIGQUIT, configuration
// errors, and `make run` end to end. internal/loopgatetest runs loopgate
// (killing every process in t.Cleanup, bounding every wait); this file
// holds what is particular to these tests: the test backend's web.config
// and small HTTP and sd_notify helpers.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// backendPkg is the test backend every web.config here runs.
const backendPkg = "github.com/loopgate/loopgate/internal/testbackend"

func TestMain(m *testing.M) { loopgatetest.Main(m, backendPkg) }

// backendApp makes an app directory whose web.config runs the test backend.
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
`, loopgatetest.Program(t, backendPkg), extra)
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
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
