// Package supervisor turns AppSpecs into running backend processes.
//
// It owns everything about a backend's life: the port and pairing token it
// is started with, its environment, readiness, the rapid-fail window,
// restarts after a crash, app_offline.htm, recycling on a web.config change,
// stdout capture and the graceful stop. One goroutine owns each app's state
// machine; the request path asks for a ready backend without a global lock.
//
// The operating system and the clock are reached through small seams so the
// state machine is tested in milliseconds without real processes.
//
// supervisor never imports fastpath: it hands out *Process values and lets
// the forwarder attach its own per-process upstream state.
package supervisor
