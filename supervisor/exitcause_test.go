package supervisor

import "testing"

// TestExitCause: how the forwarder's retry rule reads an exit status.
func TestExitCause(t *testing.T) {
	for status, want := range map[string]ExitCause{
		"exit status 3":                            ExitSelf, // Environment.Exit(3), a crash that exits
		"exit status 134":                          ExitSelf,
		"exit status 0":                            ExitKilled, // a clean exit: asked to stop (a handled SIGTERM)
		"signal: aborted (core dumped)":            ExitSelf,   // SIGABRT: .NET's unhandled exception
		"signal: aborted":                          ExitSelf,
		"signal: segmentation fault":               ExitSelf, // stack overflow
		"signal: bus error":                        ExitSelf,
		"signal: floating point exception":         ExitSelf,
		"signal: illegal instruction":              ExitSelf,
		"signal: killed":                           ExitKilled, // SIGKILL: the operator, the OOM killer
		"signal: terminated":                       ExitKilled, // SIGTERM
		"signal: interrupt":                        ExitKilled,
		"signal: hangup":                           ExitKilled,
		"unknown exit status":                      ExitNone,
		"":                                         ExitNone,
		"signal: segmentation fault (core dumped)": ExitSelf,
	} {
		if got := exitCause(status); got != want {
			t.Errorf("exitCause(%q) = %v, want %v", status, got, want)
		}
	}
}

// TestAwaitExit: AwaitExit waits for the exit, bounded, and a process
// loopgate asked to stop was ended from outside whatever its status.
func TestAwaitExit(t *testing.T) {
	p := &Process{exited: make(chan struct{})}
	if c := p.AwaitExit(10e6); c != ExitNone {
		t.Errorf("running process: %v", c)
	}
	p.exitStatus = "exit status 3"
	close(p.exited)
	if c := p.AwaitExit(0); c != ExitSelf {
		t.Errorf("exited with status 3: %v", c)
	}
	p.markStopAsked() // after the exit: a crash's clean-up stop
	if c := p.AwaitExit(0); c != ExitSelf {
		t.Errorf("stop asked after the exit: %v", c)
	}

	q := &Process{exited: make(chan struct{})}
	q.markStopAsked()
	q.exitStatus = "exit status 1"
	go close(q.exited)
	if c := q.AwaitExit(5e9); c != ExitKilled {
		t.Errorf("stopped by loopgate, exit status 1: %v", c)
	}
}
