package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// When loopgate runs as PID 1 (a container started without --init, or a
// Kubernetes pod), every orphan in the container is re-parented to it: a
// backend's own children outliving it, a shell's background jobs. PID 1
// must reap them or they stay zombies. loopgate cannot do that itself
// without racing os/exec for its backends' exit statuses (wait4(-1) would
// take them), so as PID 1 it becomes a minimal init instead: it starts
// itself again as its only child, forwards the signals loopgate handles to
// it, reaps every process that ends under it, and exits as the child did.

// reaperChildEnv marks the child, so it runs loopgate instead of another
// init. It is set only in the child's environment (and so also reaches the
// backends, harmlessly).
const reaperChildEnv = "LOOPGATE_INIT_CHILD"

// forwardedSignals are the signals loopgate acts on (DESIGN.md §1).
var forwardedSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// runAsInit is main when loopgate is PID 1: it returns the exit status and
// true, or false when this process is not PID 1 or is already the child.
func runAsInit(environ []string, stderr io.Writer) (int, bool) {
	if os.Getpid() != 1 {
		return 0, false
	}
	for _, kv := range environ {
		if strings.HasPrefix(kv, reaperChildEnv+"=") {
			return 0, false
		}
	}
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	// Caught before the child exists, so none is lost in between.
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, forwardedSignals...)
	child, err := os.StartProcess(self, os.Args, &os.ProcAttr{
		Env:   append(environ, reaperChildEnv+"=1"),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		fmt.Fprintf(stderr, "loopgate: running as PID 1, cannot start the serving process: %v\n", err)
		return exitFailure, true
	}
	pid := child.Pid
	// Reaped below with wait4(-1), not through child.
	_ = child.Release()
	go func() {
		for s := range sigc {
			// The child's pid cannot be reused before it is reaped, and
			// this process exits right after reaping it.
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			fmt.Fprintf(stderr, "loopgate: running as PID 1, waiting for the serving process: %v\n", err)
			return exitFailure, true
		}
		if got != pid {
			continue // an orphan, now reaped
		}
		signal.Stop(sigc)
		if ws.Signaled() {
			return 128 + int(ws.Signal()), true
		}
		return ws.ExitStatus(), true
	}
}
