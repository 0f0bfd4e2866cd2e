package loopgatetest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fatalTB records the first Fatal of Start and ends its goroutine, as
// testing.T would, without failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalTB) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// TestStartReturnsWhenLoopgateExits: a loopgate that exits before it is
// ready (here a stand-in that logs a config error and exits 2) fails
// Start at once with its status and log, not after ReadyTimeout.
func TestStartReturnsWhenLoopgateExits(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "loopgate")
	script := "#!/bin/sh\necho '{\"level\":\"error\",\"message\":\"web.config: no such app\"}' >&2\nexit 2\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	built[loopgatePkg] = fake
	t.Cleanup(func() { delete(built, loopgatePkg) })

	ft := &fatalTB{TB: t}
	began := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, Options{ReadyTimeout: 10 * time.Second})
	}()
	select {
	case <-done:
	case <-time.After(8 * time.Second):
		t.Fatal("Start still waiting 8 s after loopgate exited")
	}
	took := time.Since(began)
	if took > 3*time.Second {
		t.Errorf("Start took %v to see that loopgate had exited", took)
	}
	for _, want := range []string{"exited with status 2", "web.config: no such app"} {
		if !strings.Contains(ft.msg, want) {
			t.Errorf("Start failed with %q, want it to contain %q", ft.msg, want)
		}
	}
}
