// The slots' lifecycle as the app goroutine drives it: starting a slot and
// the start's outcome, taking a process out of rotation and stopping it,
// stopping everything, resizing, and the port registration of ready
// processes (Options.Ports).

package supervisor

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// registerPort tells Options.Ports about a ready process. The app goroutine
// does all registering and unregistering, so a port reused by a restart
// (an explicit ASPNETCORE_PORT) is never removed on behalf of the dead
// process after the new one registered it.
func (a *App) registerPort(p *Process) {
	if a.s.opts.Ports == nil {
		return
	}
	if old := a.ports[p.port]; old != nil {
		// A dead predecessor on the same port whose exit event is still
		// queued: its RemovePort comes first.
		a.unregisterPort(old)
	}
	if err := a.s.opts.Ports.AddPort(uint16(p.port)); err != nil {
		a.log.Warn().Err(err).Int("port", p.port).Msg("cannot register the backend port for acceleration")
		return
	}
	a.ports[p.port] = p
}

// unregisterPort removes p's port once p has exited, unless a newer process
// has registered the same port since.
func (a *App) unregisterPort(p *Process) {
	if a.ports[p.port] != p {
		return
	}
	delete(a.ports, p.port)
	if err := a.s.opts.Ports.RemovePort(uint16(p.port)); err != nil {
		a.log.Warn().Err(err).Int("port", p.port).Msg("cannot unregister the backend port")
	}
}

// onWake starts every empty slot when nothing is ready (the first request,
// or the first after a failed start or the end of a block).
func (a *App) onWake() {
	if a.stopping || a.stopped || a.offline || a.readyCount() > 0 {
		return
	}
	for _, sl := range a.slots {
		if sl.start == nil && !a.startSlot(sl, false, a.predecessor(sl)) {
			break
		}
	}
	a.publish()
}

func (a *App) readyCount() int {
	n := 0
	for _, sl := range a.slots {
		if sl.cur != nil {
			n++
		}
	}
	return n
}

// startSlot begins a start task for sl unless the rapid-fail window is
// full, in which case the app is blocked and false is returned. With after
// set, the task spawns only once that process has exited (it may hold the
// port the new one needs).
func (a *App) startSlot(sl *slot, restart bool, after *Process) bool {
	spec := a.spec.Load()
	if a.fails.blocked(time.Now(), spec.RapidFailsPerMinute) {
		sl.crashloop = true
		a.block(spec.RapidFailsPerMinute)
		return false
	}
	sl.crashloop = false
	if restart {
		sl.restarts++
		a.restarts++
		a.logEvent(zerolog.InfoLevel, "restart", "restarting after a crash", func(e *zerolog.Event) { e.Int("slot", sl.idx) })
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.epoch++
	t := &startTask{id: a.epoch, cancel: cancel, spec: spec, after: after}
	sl.start = t
	a.starters++
	a.goHelper(func() { a.runStart(ctx, t, sl.idx) })
	return true
}

func (a *App) cancelStart(sl *slot) {
	if sl.start != nil {
		sl.start.cancel()
		sl.start = nil
	}
}

// queueStop takes p out of its slot's rotation; the stop itself begins at
// the next publish, after the view without p is visible.
func (a *App) queueStop(p *Process, limit time.Duration, reason string) {
	p.stopping = true
	p.markStopAsked()
	p.endHelpers()
	a.stoppers[p] = struct{}{}
	a.pendingStops = append(a.pendingStops, pendingStop{p: p, limit: limit, reason: reason})
}

func (a *App) onStarted(ev event) {
	var sl *slot
	if ev.slot < len(a.slots) {
		sl = a.slots[ev.slot]
	}
	if sl == nil || sl.start == nil || sl.start.id != ev.id {
		// Cancelled (offline, recycle, shutdown) after it had already
		// succeeded: stop what it started.
		if ev.p != nil {
			a.queueStop(ev.p, a.spec.Load().ShutdownTimeLimit, "start cancelled")
			a.publish()
		}
		return
	}
	task := sl.start
	spec := task.spec
	sl.start = nil
	if ev.p == nil {
		a.onStartFailed(sl, ev.fail, spec)
		a.publish()
		return
	}
	p := ev.p
	if a.s.opts.NewUpstream != nil {
		p.upstream = a.s.opts.NewUpstream(p)
	}
	a.registerPort(p)
	old := sl.cur
	sl.cur = p
	sl.crashloop = false
	a.lastFailed = false
	a.logEvent(zerolog.InfoLevel, "ready", "backend ready", func(e *zerolog.Event) {
		e.Int("pid", p.pid).Int("port", p.port).Int("slot", sl.idx).Float64("startup_ms", float64(time.Since(p.started).Microseconds())/1000)
	})
	sl.hold = time.Time{}
	if old != nil {
		limit, why := a.spec.Load().ShutdownTimeLimit, "recycle"
		if task.reason != "" {
			limit, why = task.stopLimit, task.reason
		}
		a.queueStop(old, limit, why)
	}
	a.startPinger(p, spec)
	a.publish()
}

func (a *App) slotOf(p *Process) *slot {
	if p.slot < len(a.slots) && a.slots[p.slot].cur == p {
		return a.slots[p.slot]
	}
	return nil
}

// beginStop starts stopping everything for good: gracefully (Shutdown) or
// at once (Kill, which has already SIGKILLed every process group).
func (a *App) beginStop(kill bool) {
	a.stopping = true
	limit := a.spec.Load().ShutdownTimeLimit
	if kill {
		limit = 0
	}
	a.stopAll(limit, "shutdown")
	a.publish()
}

// stopAll cancels every slot's start and queues the stop of every slot's
// process with limit and reason; the slots are left empty. The caller
// publishes.
func (a *App) stopAll(limit time.Duration, reason string) {
	for _, sl := range a.slots {
		a.cancelStart(sl)
		if sl.cur != nil {
			a.queueStop(sl.cur, limit, reason)
			sl.cur = nil
		}
	}
}

// resizeSlots makes the app have n slots; surplus slots are stopped.
func (a *App) resizeSlots(n int) {
	for len(a.slots) > n {
		sl := a.slots[len(a.slots)-1]
		a.slots = a.slots[:len(a.slots)-1]
		a.cancelStart(sl)
		if sl.cur != nil {
			a.queueStop(sl.cur, a.spec.Load().ShutdownTimeLimit, "recycle")
		}
	}
	for len(a.slots) < n {
		a.slots = append(a.slots, &slot{idx: len(a.slots)})
	}
}
