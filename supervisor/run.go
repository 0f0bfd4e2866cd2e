// The app goroutine's event loop (run): what it waits on (process events,
// requests, the directory and release watches, timers), the dispatch of
// process events, publishing the view Acquire reads, and the config file's
// stamp for polling.

package supervisor

import (
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
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
