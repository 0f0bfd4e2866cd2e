package reliability

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestStdoutLogUnwritable: with stdoutLogEnabled and a log directory that
// cannot be created (its parent is a regular file; chmod would not stop
// root), the backend still starts, the problem is logged once per start,
// and the output is relayed into loopgate's log instead of being lost.
func TestStdoutLogUnwritable(t *testing.T) {
	base := t.TempDir()
	blocker := filepath.Join(base, "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	const lines = 50
	dir := appDir(t, `stdoutLogEnabled="true" stdoutLogFile="`+filepath.Join(blocker, "logs", "stdout")+`" rapidFailsPerMinute="100"`,
		map[string]string{"TB_PRINT_LINES": "50"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	checkStdoutFallback(t, l, "could not create the stdout log file", lines)
}

// TestStdoutLogDiskFull: the stdout log directory is a 16 KiB tmpfs that
// the backend's output overflows. The backend keeps running, the write
// failure is logged once per start, and the lines that did not fit are
// relayed into loopgate's log.
func TestStdoutLogDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s); the unwritable-directory case still runs", err, out)
	}
	t.Cleanup(func() {
		// Backends die with loopgate (cleanup order is last-in first-out:
		// loopgate's cleanup ran), so the mount is no longer busy.
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	const lines = 2000 // about 80 KB: five times the file system
	dir := appDir(t, `stdoutLogEnabled="true" stdoutLogFile="`+filepath.Join(mnt, "stdout")+`" rapidFailsPerMinute="100"`,
		map[string]string{"TB_PRINT_LINES": "2000"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	relayed := checkStdoutFallback(t, l, "stdout log", lines)
	// The files hold what fit; the rest went to loopgate's log.
	files, _ := filepath.Glob(filepath.Join(mnt, "stdout_*.log"))
	if len(files) != 2 {
		t.Errorf("stdout log files %v, want one per start (2)", files)
	}
	inFiles := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, line := range strings.SplitAfter(string(b), "\n") {
			if strings.HasPrefix(line, "start line") && strings.HasSuffix(line, "\n") {
				inFiles++
			}
		}
	}
	t.Logf("%d start lines in the files, %d relayed, of %d", inFiles, relayed, 2*lines)
	if inFiles+relayed < 2*lines {
		t.Errorf("%d start lines lost", 2*lines-inFiles-relayed)
	}
}

// checkStdoutFallback starts the app twice (a request, then a SIGKILL of
// the backend and a request to the restarted one) and checks: every
// request served, exactly one warning containing warning per start, and
// some output relayed into loopgate's log; it returns how many start lines
// were relayed.
func checkStdoutFallback(t *testing.T, l *loopgatetest.Process, warning string, lines int) (relayed int) {
	t.Helper()
	c := client(t, 10*time.Second)
	isWarning := func(line loopgatetest.Line) bool {
		return line.Str("level") == "warn" && strings.Contains(line.Str("message")+" "+line.Str("error"), warning)
	}
	for start := 1; start <= 2; start++ {
		code, body, err := get(c, l.URL("/"))
		if err != nil || code != 200 {
			t.Fatalf("start %d: %d %q %v", start, code, body, err)
		}
		pid := l.WaitReady(t, 1, 5*time.Second)[0]
		loopgatetest.KillAtCleanup(t, pid)
		// The start's last line ("start line N of N") is printed before
		// "listening"; wait for the request line that follows it.
		l.WaitLog(5*time.Second, func(line loopgatetest.Line) bool {
			return line.Str("stream") == "stdout" && strings.HasPrefix(line.Str("message"), "request from")
		})
		time.Sleep(200 * time.Millisecond) // let a repeated warning show, if any
		if n := l.Count(isWarning); n != start {
			t.Errorf("after start %d: %d warnings about the stdout log, want %d (once per start)", start, n, start)
		}
		if start == 1 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			loopgatetest.WaitDead(t, 5*time.Second, pid)
		}
	}
	relayed = l.Count(func(line loopgatetest.Line) bool {
		return line.Str("stream") == "stdout" && strings.HasPrefix(line.Str("message"), "start line")
	})
	t.Logf("%d warnings for 2 starts; %d of %d start lines relayed into loopgate's log", l.Count(isWarning), relayed, 2*lines)
	if relayed == 0 {
		t.Errorf("no output relayed into loopgate's log")
	}
	return relayed
}
