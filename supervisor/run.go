package supervisor

import (
	"context"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

type eventKind uint8

const (
	evStarted eventKind = iota // a start task finished (p set on success)
	evExited                   // a process exited
	evStopped                  // a stop task finished
	evProbed                   // an Unreachable check finished
	evHung                     // a pinger found p answering no ping for pingResponseTime
)

type event struct {
	kind  eventKind
	p     *Process
	slot  int
	id    uint64    // start task id
	ok    bool      // evProbed: the process accepted a connection
	since time.Time // evHung: the first unanswered ping
	fail  *startFailure
}

const (
	// configDebounce groups the burst of events an editor or a deploy
	// produces when it rewrites web.config into one reload.
	configDebounce = 150 * time.Millisecond
	// watchFallbackPoll is how often the directory is checked when it
	// cannot be watched (inotify limits).
	watchFallbackPoll = time.Second
)

// run is the app's state machine: the only goroutine that changes the
// fields documented as owned by run. It ends after Shutdown or Kill, once
// every process has exited and every helper has reported back.
func (a *App) run() {
	defer close(a.done)
	watcher, err := a.s.os.Watch(a.dir)
	var watchC <-chan string
	var pollC <-chan time.Time
	if err != nil {
		a.log.Warn().Err(err).Str("dir", a.dir).Msg("cannot watch the app directory; polling it every second")
		t := time.NewTicker(watchFallbackPoll)
		defer t.Stop()
		pollC = t.C
	} else {
		watchC = watcher.Events()
	}
	defer func() {
		if watcher != nil {
			watcher.Close()
		}
	}()
	cfgStamp := a.configStamp()
	rel := a.watchRelease()
	defer rel.close()
	relDebounce := time.NewTimer(time.Hour)
	relDebounce.Stop()
	defer relDebounce.Stop()
	// onRelease re-resolves the link; on a switch the directory watch
	// moves to the new release (inotify follows the old one's inode) and
	// the app reloads onto it.
	onRelease := func() {
		r, ok := rel.switched(a.dir)
		if !ok {
			return
		}
		a.logEvent(zerolog.InfoLevel, "release", "the app directory names another release now", func(e *zerolog.Event) {
			e.Str("release", r).Str("running", a.release)
		})
		if watcher != nil {
			watcher.Close()
		}
		if w, err := a.s.os.Watch(a.dir); err == nil {
			watcher, watchC = w, w.Events()
		} else {
			watcher, watchC = nil, nil
			a.log.Warn().Err(err).Str("dir", a.dir).Msg("cannot watch the new release's directory; web.config edits in it are seen at the next SIGHUP")
		}
		cfgStamp = a.configStamp()
		a.checkOffline()
		a.reload()
	}

	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	defer a.unblockTimer.Stop()
	defer a.stopPool()

	shutc, killc := a.s.shutc, a.s.killc
	for !a.finished() {
		if a.pool.spec != a.spec.Load() {
			a.setupPool()
		}
		a.ensureRunning()
		select {
		case <-a.wake:
			a.onWake()
		case <-a.recheck:
			a.checkOffline()
			a.publish()
		case p := <-a.unreach:
			a.onUnreachable(p)
		case ev := <-a.events:
			a.onEvent(ev)
		case reply := <-a.reloadc:
			reply <- a.reload()
		case r := <-a.ctlc:
			a.onControl(r)
		case name, ok := <-watchC:
			if !ok {
				watchC = nil
				continue
			}
			if name == "" || isOfflineName(name) {
				a.checkOffline()
			}
			if name == "" || name == filepath.Base(a.spec.Load().ConfigFile) {
				debounce.Reset(configDebounce)
			}
		case <-debounce.C:
			a.reload()
		case name, ok := <-rel.events:
			if !ok {
				rel.events = nil
				continue
			}
			if a.isLinkEvent(name) {
				relDebounce.Reset(configDebounce)
			}
		case <-relDebounce.C:
			onRelease()
		case <-rel.poll:
			onRelease()
		case <-pollC:
			a.checkOffline()
			if st := a.configStamp(); st != cfgStamp {
				cfgStamp = st
				a.reload()
			}
		case <-a.unblockTimer.C:
			a.onUnblock()
		case <-a.poolc:
			a.onPoolCheck(false)
		case <-a.pool.tickC:
			a.onPoolCheck(true)
		case <-a.pool.schedC:
			a.onSchedule()
		case <-shutc:
			shutc = nil
			a.beginStop(false)
		case <-killc:
			killc, shutc = nil, nil
			a.beginStop(true)
		}
	}
	a.diag.Load().close()
	// Let every helper finish; some may still be sending.
	helpersDone := make(chan struct{})
	go func() {
		a.helpers.Wait()
		close(helpersDone)
	}()
	for {
		select {
		case ev := <-a.events:
			if ev.kind == evExited {
				a.unregisterPort(ev.p)
			}
		case <-helpersDone:
			return
		}
	}
}

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

// finished reports whether a stopping app has nothing left to wait for.
func (a *App) finished() bool {
	if !a.stopping || a.starters > 0 || len(a.stoppers) > 0 || len(a.pendingStops) > 0 {
		return false
	}
	for _, sl := range a.slots {
		if sl.cur != nil {
			return false
		}
	}
	return true
}

type fileStamp struct {
	mod  int64 // unix ns
	size int64
	ok   bool
}

func (a *App) configStamp() fileStamp {
	fi, err := a.s.os.Stat(a.spec.Load().ConfigFile)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{fi.ModTime().UnixNano(), fi.Size(), true}
}

// publish recomputes the view from the slots, publishes it (waking every
// waiter on the old one), then starts the stops queued since the last
// publish: a process leaves the rotation before it is retired.
func (a *App) publish() {
	v := &view{changed: make(chan struct{}), epoch: a.epoch, mode: a.mode()}
	if v.mode == modeReady {
		for _, sl := range a.slots {
			if sl.cur != nil {
				v.procs = append(v.procs, sl.cur)
			}
		}
	}
	a.publishStatus() // before the view, so a woken waiter sees it
	old := a.view.Swap(v)
	close(old.changed)
	stops := a.pendingStops
	a.pendingStops = nil
	for _, ps := range stops {
		a.startStop(ps)
	}
}

// mode is what the owner's fields say Acquire should do: the mode of the
// next view, and through State the app's state in AppStatus.
func (a *App) mode() mode {
	anyReady, anyStarting := false, false
	for _, sl := range a.slots {
		anyReady = anyReady || sl.cur != nil
		anyStarting = anyStarting || sl.start != nil
	}
	switch {
	case a.stopping:
		return modeStopping
	case a.stopped:
		return modeStopped
	case a.offline:
		return modeOffline
	case anyReady:
		return modeReady
	case anyStarting:
		return modeStarting
	case a.blocked:
		return modeBlocked
	case a.lastFailed:
		return modeFailed
	}
	return modeIdle
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

func (a *App) onEvent(ev event) {
	switch ev.kind {
	case evStarted:
		a.starters--
		a.onStarted(ev)
		a.checkCtlWaits(ev)
	case evExited:
		a.onExited(ev.p)
	case evStopped:
		delete(a.stoppers, ev.p)
		if ev.p.slot < len(a.slots) && a.slots[ev.p.slot].cur == nil {
			a.slots[ev.p.slot].lastExit = ev.p.status()
		}
		a.publishStatus()
		a.checkCtlWaits(ev)
	case evProbed:
		a.onProbed(ev.p, ev.ok)
	case evHung:
		a.onHung(ev.p, ev.since)
	}
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

func (a *App) slotOf(p *Process) *slot {
	if p.slot < len(a.slots) && a.slots[p.slot].cur == p {
		return a.slots[p.slot]
	}
	return nil
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
