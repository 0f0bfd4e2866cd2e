package supervisor

import (
	"io"
	"os"
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
	o := startOutput(pipeProc{outR, errR}, zerolog.New(&logBuf), full)
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
