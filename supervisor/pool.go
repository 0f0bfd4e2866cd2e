package supervisor

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/cgroup"
)

// This file owns the app pool settings of issue 14 (configload's
// PeriodicRestart*, IdleTimeout and StartMode fields): recycles on a
// process's uptime, requests served, memory and a schedule; the idle stop;
// AlwaysRunning. The pings that find a hung process (Ping*) are in ping.go.
// The app goroutine decides everything; pingers only report.

const (
	// maxPoolTick is how often the time, request, memory and idle checks
	// run at most; shorter settings check four times per period, down to
	// minPoolTick.
	maxPoolTick = time.Second
	minPoolTick = 50 * time.Millisecond
	// memoryCheckEvery is how often periodicRestartPrivateMemory reads the
	// processes' memory.
	memoryCheckEvery = 2 * time.Second
	// recycleRetryAfter is how long a slot whose recycle failed to start
	// keeps its old process before the same reason may recycle it again
	// (the failure counts in the rapid-fail window meanwhile).
	recycleRetryAfter = time.Minute
	// scheduleRecheck bounds the wait for the next periodicRestartSchedule
	// time, so a wall clock that is set or jumps (NTP, daylight saving)
	// delays a scheduled recycle by at most this much.
	scheduleRecheck = time.Minute
)

// memoryOS is the optional part of the OS seam that reads a process tree's
// memory for periodicRestartPrivateMemory. realOS has it; with an OS that
// does not, that setting does nothing.
type memoryOS interface {
	// Memory returns the private bytes the process tree of p uses now: its
	// cgroup's anonymous memory (memory.stat anon), else the sum of the
	// tree's RssAnon; false if it cannot be read. Page cache does not
	// count, as Windows's private bytes do not hold the file cache.
	Memory(p Proc) (int64, bool)
}

// poolState is the app goroutine's state for the app pool settings.
type poolState struct {
	spec      *configload.AppSpec // the spec the tick and schedule were set up for
	tick      *time.Ticker
	tickEvery time.Duration
	tickC     <-chan time.Time
	sched     *time.Timer
	schedC    <-chan time.Time
	schedNext time.Time
	lastSum   uint64    // requests served by the running processes at the last idle check
	lastBusy  time.Time // when the app was last seen with a request (or starting)
	lastMem   time.Time
}

// setupPool (re)arms the periodic check and the schedule for the spec in
// force. run calls it whenever that spec changed.
func (a *App) setupPool() {
	spec := a.spec.Load()
	ps := &a.pool
	ps.spec = spec
	now := time.Now()
	every := time.Duration(0)
	shortest := func(d time.Duration) {
		if d > 0 && (every == 0 || d < every) {
			every = d
		}
	}
	if spec.PeriodicRestartRequests > 0 || spec.PeriodicRestartPrivateMemory > 0 {
		shortest(4 * maxPoolTick)
	}
	shortest(spec.PeriodicRestartTime)
	if idleApplies(spec) {
		shortest(spec.IdleTimeout)
	}
	if every > 0 {
		every = min(max(every/4, minPoolTick), maxPoolTick)
		if ps.tick == nil {
			ps.tick = time.NewTicker(every)
			ps.tickC = ps.tick.C
		} else if every != ps.tickEvery {
			ps.tick.Reset(every)
		}
		ps.tickEvery = every
		ps.lastBusy = now
	} else if ps.tick != nil {
		ps.tick.Stop()
		ps.tick, ps.tickC, ps.tickEvery = nil, nil, 0
	}
	if len(spec.PeriodicRestartSchedule) > 0 {
		if ps.sched == nil {
			ps.sched = time.NewTimer(time.Hour)
			ps.schedC = ps.sched.C
		}
		ps.schedNext = nextScheduled(now, spec.PeriodicRestartSchedule)
		ps.sched.Reset(min(ps.schedNext.Sub(now), scheduleRecheck))
	} else if ps.sched != nil {
		ps.sched.Stop()
		ps.sched, ps.schedC = nil, nil
	}
}

// stopPool stops the tick and the schedule timer (run's end).
func (a *App) stopPool() {
	if a.pool.tick != nil {
		a.pool.tick.Stop()
	}
	if a.pool.sched != nil {
		a.pool.sched.Stop()
	}
}

// idleApplies reports whether idleTimeout stops the app: it is set, and
// the app is not AlwaysRunning (which would start it again at once).
func idleApplies(spec *configload.AppSpec) bool {
	return spec.IdleTimeout > 0 && spec.StartMode != configload.AlwaysRunning
}

// nextScheduled is the first time after now, in now's location, that is one
// of the offsets from midnight in sched (ascending).
func nextScheduled(now time.Time, sched []time.Duration) time.Time {
	y, m, d := now.Date()
	for day := 0; day <= 2; day++ {
		for _, off := range sched {
			t := time.Date(y, m, d+day, int(off/time.Hour), int(off%time.Hour/time.Minute), int(off%time.Minute/time.Second), 0, now.Location())
			if t.After(now) {
				return t
			}
		}
	}
	return now.Add(24 * time.Hour) // not reached: sched is not empty
}

// pokePool asks the app goroutine to run the pool checks now (a process
// reached periodicRestartRequests). It never blocks.
func (a *App) pokePool() {
	select {
	case a.poolc <- struct{}{}:
	default:
	}
}

// onPoolCheck runs the idle, uptime, request and memory checks (tick: on
// the periodic tick; else poked by Release).
func (a *App) onPoolCheck(tick bool) {
	if a.stopping || a.stopped || a.offline {
		return
	}
	spec := a.spec.Load()
	now := time.Now()
	if tick && idleApplies(spec) && a.idleStop(now, spec) {
		a.publish()
		return
	}
	memDue := tick && spec.PeriodicRestartPrivateMemory > 0 && now.Sub(a.pool.lastMem) >= memoryCheckEvery
	if memDue {
		a.pool.lastMem = now
	}
	changed := false
	for _, sl := range a.slots {
		p := sl.cur
		if p == nil || sl.start != nil || p.stopping || now.Before(sl.hold) {
			continue
		}
		switch {
		case spec.PeriodicRestartTime > 0 && now.Sub(p.started) >= spec.PeriodicRestartTime:
			changed = a.recycleSlot(sl, RecycleTime, fmt.Sprintf("up for periodicRestartTime (%s)", spec.PeriodicRestartTime), nil) || changed
		case spec.PeriodicRestartRequests > 0 && p.requests.Load() >= uint64(spec.PeriodicRestartRequests):
			changed = a.recycleSlot(sl, RecycleRequests, fmt.Sprintf("served periodicRestartRequests (%d requests)", spec.PeriodicRestartRequests), nil) || changed
		case memDue:
			mo, ok := a.s.os.(memoryOS)
			if !ok {
				continue
			}
			used, ok := mo.Memory(p.proc)
			if limit := spec.PeriodicRestartPrivateMemory * 1024; ok && used > limit {
				changed = a.recycleSlot(sl, RecycleMemory, fmt.Sprintf("uses %d KB, over periodicRestartPrivateMemory (%d KB)", used/1024, spec.PeriodicRestartPrivateMemory),
					func(e *zerolog.Event) { e.Int64("memory_bytes", used) }) || changed
			}
		}
	}
	if changed {
		a.publish()
	}
}

// idleStop stops every process of the app once it has had no request for
// idleTimeout, reporting whether it did; the caller publishes. A request
// in flight (a WebSocket tunnel too) or a start keeps the app busy. The
// next request starts it again, as after loopgate's own start.
func (a *App) idleStop(now time.Time, spec *configload.AppSpec) bool {
	var sum uint64
	running, busy := false, false
	for _, sl := range a.slots {
		busy = busy || sl.start != nil
		if p := sl.cur; p != nil {
			running = true
			sum += p.requests.Load()
			busy = busy || p.active.Load() > 0
		}
	}
	if !running || busy || sum != a.pool.lastSum {
		a.pool.lastSum, a.pool.lastBusy = sum, now
		return false
	}
	if now.Sub(a.pool.lastBusy) < spec.IdleTimeout {
		return false
	}
	a.logEvent(zerolog.InfoLevel, "idle_stop", "no request for idleTimeout; stopping the app until the next request",
		func(e *zerolog.Event) { e.Str("idle_timeout", spec.IdleTimeout.String()) })
	a.stopAll(spec.ShutdownTimeLimit, "idle")
	a.pool.lastSum, a.pool.lastBusy = 0, now
	return true
}

// onSchedule recycles every running process when a periodicRestartSchedule
// time has come, and arms the timer for the next one.
func (a *App) onSchedule() {
	spec := a.spec.Load()
	now := time.Now()
	if len(spec.PeriodicRestartSchedule) == 0 || a.pool.sched == nil {
		return
	}
	if now.Before(a.pool.schedNext) {
		a.pool.sched.Reset(min(a.pool.schedNext.Sub(now), scheduleRecheck))
		return
	}
	at := a.pool.schedNext
	a.pool.schedNext = nextScheduled(now, spec.PeriodicRestartSchedule)
	a.pool.sched.Reset(min(a.pool.schedNext.Sub(now), scheduleRecheck))
	if a.stopping || a.stopped || a.offline {
		return
	}
	changed := false
	for _, sl := range a.slots {
		if sl.cur != nil && sl.start == nil && !sl.cur.stopping {
			changed = a.recycleSlot(sl, RecycleSchedule, "periodicRestartSchedule time "+at.Format("15:04:05"), nil) || changed
		}
	}
	if changed {
		a.publish()
	}
}

// recycleSlot replaces sl's running process with a new one, overlapped: the
// old one stays in rotation until the new one is ready, then drains and
// stops (reason RecyclePing: is killed at once). With an explicit
// ASPNETCORE_PORT the two cannot listen at once, so the old one is stopped
// first. It reports false, doing nothing, when the rapid-fail window is
// full. The caller publishes.
func (a *App) recycleSlot(sl *slot, reason string, why string, fields func(*zerolog.Event)) bool {
	spec := a.spec.Load()
	old := sl.cur
	if old == nil || sl.start != nil || a.fails.blocked(time.Now(), spec.RapidFailsPerMinute) {
		return false
	}
	limit := spec.ShutdownTimeLimit
	if reason == RecyclePing {
		limit = 0
	}
	var after *Process
	if port, _ := explicitPort(spec); port != 0 {
		after = old
		a.queueStop(old, limit, reason)
		sl.cur = nil
	}
	if !a.startSlot(sl, false, after) {
		return false
	}
	sl.start.reason, sl.start.stopLimit = reason, limit
	a.countRecycle(reason)
	a.logEvent(zerolog.InfoLevel, "recycle", "recycling the process: "+why, func(e *zerolog.Event) {
		e.Str("reason", reason).Int("pid", old.pid).Int("slot", sl.idx)
		if fields != nil {
			fields(e)
		}
	})
	return true
}

// ensureRunning starts every empty slot of a startMode AlwaysRunning app
// that is not offline, stopped by an operator (App.Stop, as a stopped IIS
// pool stays stopped), stopping or held back by the rapid-fail window: at
// loopgate's start, after app_offline.htm goes or App.Start, after a
// failed start or a block ends. run calls it before waiting for the next event.
func (a *App) ensureRunning() {
	if a.spec.Load().StartMode != configload.AlwaysRunning || a.stopping || a.stopped || a.offline || a.blocked {
		return
	}
	changed := false
	for _, sl := range a.slots {
		if sl.cur == nil && sl.start == nil {
			changed = true
			if !a.startSlot(sl, false, a.predecessor(sl)) {
				break
			}
		}
	}
	if changed {
		a.publish()
	}
}

// predecessor is the process of slot sl that is still being stopped (an
// idle stop, app_offline.htm) when the app has an explicit
// ASPNETCORE_PORT, nil otherwise: a new process for the slot must not be
// spawned before it has exited, or it could not listen.
func (a *App) predecessor(sl *slot) *Process {
	if port, _ := explicitPort(a.spec.Load()); port == 0 {
		return nil
	}
	for p := range a.stoppers {
		if p.slot == sl.idx && !p.hasExited() {
			return p
		}
	}
	return nil
}

// notReady is AppStatus.NotReady: why the app holds readiness back.
func (a *App) notReady() string {
	if a.spec.Load().StartMode != configload.AlwaysRunning || a.stopping || a.stopped || a.offline || a.readyCount() > 0 {
		return ""
	}
	if a.blocked {
		return "startMode AlwaysRunning: no process ready (rapidFailsPerMinute exceeded)"
	}
	return "startMode AlwaysRunning: no process ready yet"
}

// Memory is memoryOS for the real OS: the private (anonymous) memory of the
// process's own cgroup, else the RssAnon of its process tree.
func (realOS) Memory(p Proc) (int64, bool) {
	rp, ok := p.(*realProc)
	if !ok {
		return 0, false
	}
	if rp.group != nil {
		if n, _, err := rp.group.PrivateMemory(); err == nil {
			return n, true
		}
	}
	var total int64
	for _, pid := range processTree(rp.pid) {
		total += cgroup.PrivateRSS(pid)
	}
	return total, total > 0
}

var (
	_ memoryOS = realOS{}
	_ pingOS   = realOS{}
)
