package supervisor

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// pipeProc is a Proc that is only its output pipes.
type pipeProc struct{ out, err io.ReadCloser }

func (p pipeProc) PID() int                    { return 1 }
func (p pipeProc) Stdout() io.ReadCloser       { return p.out }
func (p pipeProc) Stderr() io.ReadCloser       { return p.err }
func (p pipeProc) Signal(syscall.Signal) error { return nil }
func (p pipeProc) Wait() string                { return "exit status 0" }

// TestOutputFileFullRelays: a stdout log file that refuses writes (a full
// disk: /dev/full) is given up with one warning, and every line goes to
// loopgate's log instead of being lost.
func TestOutputFileFullRelays(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	var logBuf syncBuffer
	o := startOutput(pipeProc{outR, errR}, zerolog.New(&logBuf), full, rotation{})
	for i := range 3 {
		io.WriteString(outW, "line "+string(rune('a'+i))+"\n")
	}
	outW.Close()
	errW.Close()
	select {
	case <-o.done:
	case <-time.After(5 * time.Second):
		t.Fatal("output readers did not finish")
	}
	log := logBuf.String()
	if n := strings.Count(log, "could not write the stdout log file"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, log)
	}
	for _, want := range []string{`"line a"`, `"line b"`, `"line c"`} {
		if !strings.Contains(log, want) {
			t.Errorf("%s not relayed:\n%s", want, log)
		}
	}
	if err := full.Close(); err == nil {
		t.Errorf("the file was not closed when it was given up")
	}
}

// TestStdoutLogRotation: with stdoutLogMaxBytes a process's stdout log is
// cut into files between lines, none split and none lost, a long line that
// crosses the limit staying whole; SIGUSR1's rotation starts a file at the
// next line's end; stdoutLogMaxFiles keeps the newest files and never
// deletes one that is open.
func TestStdoutLogRotation(t *testing.T) {
	dir := t.TempDir()
	base := dir + "/logs/stdout"
	// An older process's closed file and another app's file.
	os.MkdirAll(dir+"/logs", 0o755)
	old := base + "_20260101000000_7.log"
	os.WriteFile(old, []byte("old\n"), 0o644)
	os.Chtimes(old, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
	other := dir + "/logs/other_20260101000000_7.log"
	os.WriteFile(other, []byte("other\n"), 0o644)

	started := time.Date(2026, 12, 7, 9, 30, 0, 0, time.UTC)
	f, err := openStdoutLog(base, started, 42)
	if err != nil {
		t.Fatal(err)
	}
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	var logBuf syncBuffer
	logs := &stdoutLogs{}
	o := startOutput(pipeProc{outR, errR}, zerolog.New(&logBuf), f, rotation{base: base, maxBytes: 4096, maxFiles: 3, logs: logs})
	if _, err := os.Stat(old); err != nil {
		t.Errorf("with 2 files and 3 kept, the old file went: %v", err)
	}

	var want strings.Builder
	line := func(s string) {
		want.WriteString(s)
		if _, err := io.WriteString(outW, s); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 { // 100 × 100 bytes: three files of 4096 at most
		line(fmt.Sprintf("%-99d\n", i))
	}
	// A long line crossing the limit is not split, written in two pieces.
	long := strings.Repeat("L", 30000) + "\n"
	line(long[:20000])
	line(long[20000:])
	// Wait for the reader to have taken everything so far.
	// The reader may still hold the end of the long line: then the
	// rotation waits for the line's end. Either way "after SIGUSR1" is the
	// whole of the last file.
	o.requestRotate() // SIGUSR1: the next line starts a new file
	line("after SIGUSR1\n")
	outW.Close()
	errW.Close()
	select {
	case <-o.done:
	case <-time.After(5 * time.Second):
		t.Fatal("output readers did not finish")
	}

	// Every file of this process, in order: first, .1, .2, ...
	var got strings.Builder
	first := stdoutLogName(base, started, 42)
	names := []string{first}
	segs := strings.Count(logBuf.String(), `"event":"stdout_log_rotate"`)
	for n := 1; n <= segs; n++ {
		names = append(names, segmentName(first, n))
	}
	// maxFiles=3 kept the newest three of this app's files; the old
	// process's file and this one's first files are gone, the other app's
	// file is untouched.
	var kept []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		kept = append(kept, filepath.Base(n))
		if len(b) > 4096 && !strings.Contains(string(b), "LLLL") {
			t.Errorf("%s holds %d bytes, over stdoutLogMaxBytes", n, len(b))
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends in the middle of a line", n)
		}
		got.Write(b)
	}
	if len(names) < 5 {
		t.Fatalf("files %v: want at least 5 (4 by size, 1 by SIGUSR1)", names)
	}
	if len(kept) != 3 {
		t.Errorf("kept %v, want the newest 3", kept)
	}
	if !strings.HasSuffix(want.String(), got.String()) || !strings.HasSuffix(got.String(), long+"after SIGUSR1\n") {
		t.Errorf("the kept files are not the end of the output, whole lines in order")
	}
	last, _ := os.ReadFile(names[len(names)-1])
	if string(last) != "after SIGUSR1\n" {
		t.Errorf("after SIGUSR1 the last file holds %q", last)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the old process's file was kept beyond stdoutLogMaxFiles")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another base's file was pruned: %v", err)
	}
	if all, _ := filepath.Glob(base + "_*.log"); len(all) != 3 {
		t.Errorf("files left %v, want 3", all)
	}
}
