package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bpf"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// runBinary runs loopgate to completion (bounded) and returns exit status
// and stderr.
func runBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(loopgatetest.Loopgate(t), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("loopgate %q did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// A configuration error at start-up prints every problem of every app with
// its file and line, starts nothing and exits 2.
func TestConfigErrorsExit2(t *testing.T) {
	bad1, bad2 := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(bad1, "web.config"), []byte(`<configuration>
<system.webServer>
<aspNetCore processPath="x"
  startupTimeLimit="4000"
  rapidFailsPerMinute="many" />
</system.webServer>
</configuration>`), 0o644)
	missing := filepath.Join(bad2, "nothing-here")
	code, stderr := runBinary(t, "serve", "--listen", "127.0.0.1:0", "--admin", "", bad1, "/b="+missing)
	if code != exitUsage {
		t.Errorf("exit status %d, want 2", code)
	}
	for _, want := range []string{
		filepath.Join(bad1, "web.config") + `:4: startupTimeLimit="4000"`,
		filepath.Join(bad1, "web.config") + `:5: rapidFailsPerMinute="many"`,
		filepath.Join(missing, "web.config"),
		"nothing started",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, `"event":"ready"`) {
		t.Error("loopgate got ready despite the errors")
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := backendApp(t, "")
	for _, args := range [][]string{
		{"serve", dir, dir},
		{"serve", "--accel", "maybe", dir},
		{"serve"},
		{"bogus"},
	} {
		code, stderr := runBinary(t, args...)
		if code != exitUsage || stderr == "" {
			t.Errorf("loopgate %q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// A port already taken (front or admin) is a runtime failure: exit 1.
func TestListenFailureExit1(t *testing.T) {
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{backendApp(t, "")}})
	code, stderr := runBinary(t, "serve", "--listen", in.Front, "--admin", "", backendApp(t, ""))
	if code != exitFailure || !strings.Contains(stderr, in.Front) {
		t.Errorf("listening on a taken port: exit %d, stderr:\n%s", code, stderr)
	}
	code, stderr = runBinary(t, "serve", "--listen", "127.0.0.1:0", "--admin", in.Admin, backendApp(t, ""))
	if code != exitFailure || !strings.Contains(stderr, in.Admin) {
		t.Errorf("admin on a taken port: exit %d, stderr:\n%s", code, stderr)
	}
}

// --accel on refuses to start where the sockmap cannot be loaded, saying
// why; where it can, it runs accelerated and /status says so.
func TestAccelOn(t *testing.T) {
	dir := backendApp(t, "")
	if probe := bpf.Probe(); probe != nil {
		code, stderr := runBinary(t, "serve", "--listen", "127.0.0.1:0", "--admin", "", "--accel", "on", dir)
		if code != exitFailure || !strings.Contains(stderr, "--accel on") {
			t.Errorf("--accel on without support (%v): exit %d, stderr:\n%s", probe, code, stderr)
		}
		in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--accel", "auto", dir}})
		if s := in.Status(t); s.Acceleration.Active || s.Acceleration.Reason == "" {
			t.Errorf("--accel auto without support: /status acceleration %+v, want inactive with a reason", s.Acceleration)
		}
		return
	}
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--accel", "on", dir}})
	get(t, "http://"+in.Front+"/pid")
	if s := in.Status(t); !s.Acceleration.Active || s.Acceleration.Mode != "on" {
		t.Errorf("--accel on with support: /status acceleration %+v", s.Acceleration)
	}
}

// The limit flags reach the front server: a header block over
// --max-header-bytes gets 431, and a value fastpath refuses is a usage error.
func TestLimitFlags(t *testing.T) {
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--max-header-bytes", "1024", backendApp(t, "")}})
	req, _ := http.NewRequest("GET", "http://"+in.Front+"/pid", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 2048))
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 KiB header with --max-header-bytes 1024: %d, want 431", resp.StatusCode)
	}
	code, stderr := runBinary(t, "serve", "--listen", "127.0.0.1:0", "--admin", "", "--max-header-bytes", "100", backendApp(t, ""))
	if code != exitUsage || !strings.Contains(stderr, "MaxHeaderBytes=100") {
		t.Errorf("--max-header-bytes 100: exit %d, stderr:\n%s", code, stderr)
	}
}
