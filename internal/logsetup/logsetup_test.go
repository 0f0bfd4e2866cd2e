package logsetup

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJSONByDefaultWithLevelFilter(t *testing.T) {
	var buf bytes.Buffer
	log, sink, err := New(Options{Level: "warn", Stderr: &buf})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	log.Info().Msg("hidden")
	log.Warn().Str("app", "/").Msg("shown")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines %q, want only the warning", len(lines), lines)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatalf("not JSON: %q: %v", lines[0], err)
	}
	if ev["level"] != "warn" || ev["message"] != "shown" || ev["app"] != "/" || ev["time"] == nil {
		t.Errorf("event %v lacks level, message, app or time", ev)
	}
}

func TestConsoleFormatOnRequest(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := New(Options{Format: FormatConsole, Stderr: &buf})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("listen", "127.0.0.1:8080").Msg("listening")
	out := buf.String()
	if strings.HasPrefix(out, "{") || !strings.Contains(out, "INF") || !strings.Contains(out, "listen=127.0.0.1:8080") {
		t.Errorf("console output %q", out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colours written to a non-terminal: %q", out)
	}
}

func TestBadOptionsAreUsageErrors(t *testing.T) {
	for _, o := range []Options{{Level: "verbose"}, {Format: "xml"}} {
		_, _, err := New(o)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("New(%+v) = %v, want ErrUsage", o, err)
		}
	}
}

// TestReopenAfterRotation is what logrotate + SIGUSR1 does: the file is
// renamed, loopgate keeps writing to the renamed file until told to reopen,
// then writes to a fresh file at the original path.
func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "loopgate.log")
	log, sink, err := New(Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if sink.Path() != path {
		t.Errorf("Path() = %q", sink.Path())
	}
	log.Info().Msg("one")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("two")
	if err := sink.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("three")

	rotated, _ := os.ReadFile(path + ".1")
	fresh, _ := os.ReadFile(path)
	if !strings.Contains(string(rotated), `"one"`) || !strings.Contains(string(rotated), `"two"`) || strings.Contains(string(rotated), `"three"`) {
		t.Errorf("rotated file holds %q, want one and two", rotated)
	}
	if !strings.Contains(string(fresh), `"three"`) || strings.Contains(string(fresh), `"two"`) {
		t.Errorf("new file holds %q, want only three", fresh)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("new log file mode: %v %v, want 0640", fi.Mode(), err)
	}
}

// A failed reopen keeps logging to the old file instead of losing lines.
func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	os.Mkdir(sub, 0o755)
	path := filepath.Join(sub, "loopgate.log")
	log, sink, err := New(Options{File: path})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if err := os.Rename(sub, filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Reopen(); err == nil {
		t.Fatal("Reopen into a missing directory succeeded")
	}
	log.Info().Msg("still here")
	got, _ := os.ReadFile(filepath.Join(dir, "moved", "loopgate.log"))
	if !strings.Contains(string(got), "still here") {
		t.Errorf("old file holds %q", got)
	}
}

func TestLogFileUnopenable(t *testing.T) {
	_, _, err := New(Options{File: filepath.Join(t.TempDir(), "no", "such", "dir.log")})
	if err == nil || !strings.Contains(err.Error(), "opening log file") {
		t.Fatalf("err = %v", err)
	}
}

// TestConsoleAccessAndBackendLines: in the console format an access line
// reads as a request, and a backend's line shows one timestamp, loopgate's,
// not the app's own after it. JSON keeps both as they are.
func TestConsoleAccessAndBackendLines(t *testing.T) {
	var buf bytes.Buffer
	log, _, err := New(Options{Format: FormatConsole, Stderr: &buf})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("event", "access").Str("method", "GET").Str("path", "/api/x?y=1").Int("status", 200).
		Int64("bytes", 232).Int64("bytes_in", 0).Float64("duration_ms", 1.25).Str("app", "/api").Int("pid", 7).Str("client", "127.0.0.1:5").Send()
	for _, line := range []string{
		"[2026-12-07 08:55:26 +0000] [632] [INFO] Starting gunicorn 23.0.0",
		"2026-12-07 08:55:26,123 - app - INFO - ready",
		"2026-12-07T08:55:26.123456Z info: Microsoft.Hosting.Lifetime[0]",
		"2026/12/07 08:55:26 listening",
		"info: Microsoft.Hosting.Lifetime[14]",
		"2026-12-07",
	} {
		log.Info().Str("app", "/").Int("pid", 632).Str("stream", "stdout").Msg(line)
	}
	got := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	want := []string{
		"INF GET /api/x?y=1 200 232B 1.25ms app=/api bytes_in=0 client=127.0.0.1:5 pid=7",
		"INF [632] [INFO] Starting gunicorn 23.0.0 app=/ pid=632 stream=stdout",
		"INF app - INFO - ready app=/ pid=632 stream=stdout",
		"INF info: Microsoft.Hosting.Lifetime[0] app=/ pid=632 stream=stdout",
		"INF listening app=/ pid=632 stream=stdout",
		"INF info: Microsoft.Hosting.Lifetime[14] app=/ pid=632 stream=stdout",
		"INF 2026-12-07 app=/ pid=632 stream=stdout",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(got), buf.String())
	}
	for i := range want {
		// Each line starts with loopgate's timestamp: "15:04:05.000 ".
		if len(got[i]) < 13 || got[i][2] != ':' || got[i][13:] != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q after the timestamp", i, got[i], want[i])
		}
	}
}
