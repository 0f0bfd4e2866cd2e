// Package supervisor turns AppSpecs into running backend processes.
//
// It owns everything about a backend's life: the port and pairing token it
// is started with, its environment, readiness, the rapid-fail window,
// restarts after a crash, app_offline.htm, recycling on a web.config change,
// stdout capture and the graceful stop (ancm-spec.md §1 and §4, changed
// where DESIGN.md §4 says so).
//
// One goroutine owns each app's state machine. Everything else talks to it
// through channels: start, stop and probe tasks report back on one, Reload
// and Shutdown send requests on others. The request path never does:
// Acquire loads an immutable snapshot of the ready processes from an atomic
// pointer and picks one round robin, without a lock or an allocation, and
// only falls back to waking the owner when there is nothing ready.
//
// Backends run in their own process group, are forked from one OS thread
// that stays locked for the life of the process so that PR_SET_PDEATHSIG
// kills them when loopgate dies (even by SIGKILL), and lose the rest of
// their group when they exit. With Options.Contain each also runs in a
// cgroup of its own (internal/cgroup), killed as a whole when it exits, and
// a keeper process kills them all if loopgate dies.
//
// The operating system (spawn, signals, port probes, the shutdown request,
// file reads, directory watching) is reached through the OS interface, and time through
// the time package, so the state machines are tested with fakes under
// testing/synctest in milliseconds.
//
// supervisor never imports fastpath: it hands out *Process values and lets
// the forwarder attach its own per-process upstream state.
package supervisor
