package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// copyExample copies examples/hello (without a built binary) to a temp dir
// and builds the app next to its web.config, as `make example` does, so the
// test never writes into the repository.
func copyExample(t *testing.T) string {
	t.Helper()
	src := "../../examples/hello"
	dst := loopgatetest.CopyDir(t, src, "hello")
	if err := gobuild.Build(filepath.Join(dst, "hello"), "../../examples/hello"); err != nil {
		t.Fatal(err)
	}
	return dst
}

func backendPID(t *testing.T, in *loopgatetest.Process) int {
	t.Helper()
	s := in.Status(t)
	if len(s.Apps) != 1 || len(s.Apps[0].Processes) == 0 {
		t.Fatalf("/status apps: %+v", s.Apps)
	}
	return s.Apps[0].Processes[0].PID
}

// TestMakeRunEndToEnd does what `make run` does and what a newcomer tries
// first: serve examples/hello, get the page, survive a backend crash, go
// offline with app_offline.htm and back, and stop with Ctrl-C leaving no
// process behind.
func TestMakeRunEndToEnd(t *testing.T) {
	loopgatetest.Loopgate(t)
	dir := copyExample(t)
	helloExe := filepath.Join(dir, "hello")
	t.Cleanup(func() {
		for _, pid := range loopgatetest.Running(helloExe) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{dir}})
	page := "http://" + in.Front + "/"

	// The startup log tells a newcomer where to go and what is mounted.
	if l := in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "mounted" }); l.Str("app") != "/" || l.Str("dir") != dir {
		t.Errorf("mounted log line: %v", l)
	}

	// The first request starts the backend and returns its page.
	code, body := get(t, page)
	pid := backendPID(t, in)
	if code != 200 || !strings.Contains(body, strconv.Itoa(pid)) {
		t.Fatalf("GET /: %d, PID %d not on the page:\n%s", code, pid, body)
	}

	// Kill the backend: the next request is served by a new process.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	loopgatetest.WaitDead(t, 5*time.Second, pid)
	code, body = get(t, page)
	newPID := backendPID(t, in)
	if code != 200 || newPID == pid || !strings.Contains(body, strconv.Itoa(newPID)) {
		t.Fatalf("after killing %d: %d from PID %d:\n%s", pid, code, newPID, body)
	}

	// app_offline.htm takes the app offline with its own bytes as a 503.
	offline := "<html><body>Back soon: maintenance.</body></html>"
	if err := os.WriteFile(filepath.Join(dir, "app_offline.htm"), []byte(offline), 0o644); err != nil {
		t.Fatal(err)
	}
	// WriteFile creates the file empty and then writes it, so the first 503
	// may carry the empty file; the content is re-read while offline (spec
	// §4.6: at most every 200 ms), so the page must follow within a second.
	resp := pollUntil(t, page, http.StatusServiceUnavailable)
	resp.Body.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		resp := pollUntil(t, page, http.StatusServiceUnavailable)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) == offline && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offline answer: %q (%s), want the file's bytes as text/html", b, resp.Header.Get("Content-Type"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	loopgatetest.WaitDead(t, 10*time.Second, newPID) // app_offline stops the backend

	// Removing it brings the app back.
	if err := os.Remove(filepath.Join(dir, "app_offline.htm")); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, page, http.StatusOK).Body.Close()

	// Ctrl-C stops everything and leaves no process behind.
	last := backendPID(t, in)
	in.Signal(syscall.SIGINT)
	if code := in.Wait(20 * time.Second); code != 0 {
		t.Errorf("exit status %d after Ctrl-C, want 0", code)
	}
	loopgatetest.WaitDead(t, time.Second, last)
	if left := loopgatetest.Running(helloExe); len(left) > 0 {
		t.Errorf("backend processes left behind after Ctrl-C: %v", left)
	}
}

// pollUntil GETs url until it answers want (bounded), returning the response.
func pollUntil(t *testing.T, url string, want int) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := httpc.Get(url)
		if err == nil && resp.StatusCode == want {
			return resp
		}
		got := "error " + errString(err)
		if err == nil {
			got = resp.Status
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %s after 10 s, want %d", url, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
