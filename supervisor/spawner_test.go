package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mainThreadHelperEnv makes the test binary run lockOffMainThread from its
// main thread and print where f ran (mainThreadHelper).
const mainThreadHelperEnv = "LG_HELPER_MAINTHREAD"

func init() {
	if os.Getenv(mainThreadHelperEnv) == "1" {
		// Locked in init, main (TestMain) runs on the main thread.
		runtime.LockOSThread()
		mainThreadHelper()
	}
}

func mainThreadHelper() {
	if unix.Gettid() != unix.Getpid() {
		fmt.Println("helper not on the main thread")
		os.Exit(1)
	}
	lockOffMainThread(func() {
		fmt.Println(unix.Gettid(), unix.Getpid())
		os.Exit(0)
	})
	select {}
}

// TestSpawnerOffMainThread: the spawner's thread is never the main thread
// (the thread group leader, which would take loopgate's memory charges
// into an app's cgroup v1 memory cgroup during a fork), even when the
// goroutine that starts it is on the main thread.
func TestSpawnerOffMainThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainThreadHelperEnv+"=1")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.Output(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("the helper ran 20 s")
	}
	var tid, pid int
	if _, serr := fmt.Sscan(strings.TrimSpace(string(out)), &tid, &pid); serr != nil || err != nil {
		t.Fatalf("helper: %v, %q", err, out)
	}
	if tid == pid {
		t.Errorf("f ran on the main thread %d", tid)
	}
}
