// Crash and restart handling in the app goroutine: a ready process that
// exited or stopped accepting connections (crash, counted in the rapid-fail
// window, its slot restarted), a start that failed, and the rapid-fail
// block with its end.

package supervisor

import (
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

func (a *App) block(limit int) {
	if a.blocked {
		return
	}
	a.blocked = true
	a.blocks++
	free := a.fails.freeAt(limit)
	a.unblockTimer.Reset(time.Until(free))
	a.logEvent(zerolog.ErrorLevel, "rapid_fail_block", "rapidFailsPerMinute exceeded; answering 502.5 until the window frees up",
		func(e *zerolog.Event) { e.Int("limit", limit).Time("until", free) })
}

// clearRapidFails forgets every failure in the rapid-fail window and ends
// a block: a clean slate after app_offline.htm goes away or a new
// configuration is accepted, as the reference's new application object
// gets one. The caller publishes.
func (a *App) clearRapidFails() {
	a.fails.reset()
	a.blocked, a.lastFailed = false, false
	a.unblockTimer.Stop()
}

// onUnblock ends a block: the window has room again. An app that is still
// serving from other slots restarts its empty ones at once; otherwise the
// next request starts it.
func (a *App) onUnblock() {
	if !a.blocked {
		return
	}
	a.blocked = false
	a.lastFailed = false
	for _, sl := range a.slots {
		sl.crashloop = false
	}
	if !a.stopping && !a.stopped && !a.offline && a.readyCount() > 0 {
		for _, sl := range a.slots {
			if sl.cur == nil && sl.start == nil && !a.startSlot(sl, true, nil) {
				break
			}
		}
	}
	a.publish()
}

func (a *App) onStartFailed(sl *slot, f *startFailure, spec *configload.AppSpec) {
	a.lastStartError = f.err.Error()
	a.startFailures++
	a.fails.add(time.Now())
	a.logEvent(zerolog.ErrorLevel, "start_failed", "backend failed to start", func(e *zerolog.Event) {
		e.Int("slot", sl.idx).Str("command", f.cmdline).Str("exit_status", f.exitStatus).
			Int("attempts", f.attempts).Err(f.err).Str("output", string(f.output))
	})
	if sl.cur != nil {
		// A recycle whose new process failed: the old one keeps serving,
		// and no periodic reason recycles it again for a while.
		sl.hold = time.Now().Add(recycleRetryAfter)
		return
	}
	if a.readyCount() > 0 {
		// Other slots serve; this one retries at once, bounded by the window.
		a.startSlot(sl, false, nil)
		return
	}
	for _, o := range a.slots {
		if o.start != nil {
			return // another slot may still come up
		}
	}
	a.lastFailed = true
	if a.fails.blocked(time.Now(), spec.RapidFailsPerMinute) {
		a.block(spec.RapidFailsPerMinute)
	}
}

// onExited handles the exit of a process. Only a ready process that was
// not asked to stop has crashed; starts and stops handle their own exits.
func (a *App) onExited(p *Process) {
	a.unregisterPort(p)
	sl := a.slotOf(p)
	if sl == nil || p.stopping {
		return
	}
	a.crash(sl, p, "backend exited")
}

// crash clears sl after its process p died or hung, counts it and restarts
// the slot if the window allows.
func (a *App) crash(sl *slot, p *Process, why string) {
	sl.cur = nil
	a.crashes++
	a.fails.add(time.Now())
	if p.hasExited() {
		sl.lastExit = p.status()
	}
	// A process the OOM killer ended was claimed as it was reaped; a
	// backend that exited because the killer took one of its children is
	// claimed here.
	oom := p.hasExited() && (p.oomKilled || a.claimOOMKill())
	if oom {
		why += ": killed by the kernel's OOM killer at the app's memoryLimit"
		sl.lastExit += " (out of memory: memoryLimit)"
	}
	a.logEvent(zerolog.ErrorLevel, "crash", why, func(e *zerolog.Event) {
		e.Int("pid", p.pid).Int("port", p.port).Int("slot", sl.idx).Str("exit_status", sl.lastExit)
		if oom {
			e.Bool("oom_kill", true)
		}
	})
	// Clean up: the stop sees the exit (or kills a hung process at once),
	// then unregisters the port and closes the upstream once drained.
	a.queueStop(p, 0, "crash")
	if !a.stopping && !a.stopped && !a.offline && sl.start == nil {
		a.startSlot(sl, true, p)
	}
	a.publish()
}

func (a *App) onUnreachable(p *Process) {
	if a.slotOf(p) == nil || p.stopping {
		p.checking.Store(false)
		return
	}
	a.goHelper(func() {
		ok := false
		for i := 0; i < 3 && !ok; i++ {
			if i > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			ok, _ = a.probe(p, 250*time.Millisecond)
		}
		a.send(event{kind: evProbed, p: p, ok: ok})
	})
}

func (a *App) onProbed(p *Process, ok bool) {
	p.checking.Store(false)
	sl := a.slotOf(p)
	if ok || sl == nil || p.stopping || p.hasExited() {
		return
	}
	// Alive but not listening: the reference stops such a process and
	// counts it as a rapid fail.
	p.proc.Signal(syscall.SIGKILL)
	a.crash(sl, p, "backend stopped accepting connections; killed")
}
