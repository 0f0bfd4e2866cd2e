package supervisor

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

// reload re-reads the app's web.config (SIGHUP or a debounced file change).
// An invalid file keeps the running spec and records the error. An
// unchanged spec leaves everything alone. A changed one becomes the spec in
// force; unless the running spec says disallowRotationOnConfigChange (the
// setting in force when the change happened, as in the reference), the app
// is recycled with zero downtime: each running slot gets a new process, and
// the old one is drained and stopped only after the new one is ready. If a
// new process fails to start, the old one keeps serving.
//
// When the app directory is a symbolic link that now names another release
// (release.go), the app is recycled onto it even if its web.config is the
// same, and disallowRotationOnConfigChange does not apply: a deploy wants
// its new code running. A new release with a broken web.config changes
// nothing; the error names the release.
func (a *App) reload() error {
	cur := a.spec.Load()
	target := resolveDir(a.dir)
	newRelease := target != "" && a.release != "" && target != a.release
	spec, err := a.s.load(a.dir, a.vpath)
	if err == nil && (spec.Dir != cur.Dir || spec.VirtualPath != cur.VirtualPath) {
		err = fmt.Errorf("%s: the reloaded spec is for %s at %s", cur.ConfigFile, spec.Dir, spec.VirtualPath)
	}
	if err == nil {
		if _, ierr := ResolveIdentity(spec); ierr != nil {
			err = fmt.Errorf("%s: %w", spec.ConfigFile, ierr)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		// Deleted, or not there yet in the middle of a deployment that
		// replaces the directory's files. IIS would stop hosting the app; a
		// deployment must not take a site down for the moment between the
		// delete and the copy, so the app keeps serving, as with a broken
		// file, until web.config is back or loopgate restarts without it.
		a.reloadsFailed++
		a.configError = fmt.Sprintf("%s is missing; the app keeps running with its last configuration "+
			"(app_offline.htm takes it offline; restart loopgate without this APP to remove it)", cur.ConfigFile)
		a.logEvent(zerolog.ErrorLevel, "config_missing", a.configError, nil)
		a.publishStatus()
		return err
	}
	if err != nil {
		a.reloadsFailed++
		a.configError = err.Error()
		if newRelease {
			a.configError = fmt.Sprintf("new release %s not taken: %v; %s keeps serving", target, err, a.release)
		}
		a.logEvent(zerolog.ErrorLevel, "config_error", "web.config is invalid; the running configuration stays in force",
			func(e *zerolog.Event) { e.Err(err) })
		a.publishStatus()
		return err
	}
	a.reloadsOK++
	if a.configError != "" {
		a.configError = ""
		msg := "web.config is good again; applying it"
		if spec.Equal(cur) {
			msg = "web.config is good again, and the same as the configuration running"
		}
		a.logEvent(zerolog.InfoLevel, "config_ok", msg, nil)
	}
	if spec.Equal(cur) && !newRelease {
		a.publishStatus()
		return nil
	}
	a.spec.Store(spec)
	if newRelease {
		if spec.DebugFile != cur.DebugFile || spec.DebugLevel != cur.DebugLevel {
			a.setDiag(spec)
		}
		old := a.release
		a.release = target
		a.countRecycle(RecycleRelease)
		a.logEvent(zerolog.InfoLevel, "recycle", "new release; recycling onto it", func(e *zerolog.Event) {
			e.Str("reason", RecycleRelease).Str("release", target).Str("previous", old)
		})
		a.recycleOnto(cur)
		return nil
	}
	if spec.DebugFile != cur.DebugFile || spec.DebugLevel != cur.DebugLevel {
		a.setDiag(spec)
	}
	if cur.DisallowRotationOnConfigChange {
		a.logEvent(zerolog.InfoLevel, "recycle", "web.config changed; disallowRotationOnConfigChange keeps the running processes (the new settings apply at their next start)", nil)
		a.publishStatus()
		return nil
	}
	a.countRecycle(RecycleConfig)
	a.logEvent(zerolog.InfoLevel, "recycle", "web.config changed; recycling", func(e *zerolog.Event) { e.Str("reason", RecycleConfig) })
	a.recycleOnto(cur)
	return nil
}

// recycleOnto moves the app onto the spec just stored, after a release or
// a web.config change: a fresh rapid-fail count, and every running slot
// recycled (see recycleSlots); an app stopping, stopped or offline only
// resizes its slots, for its next start. cur is the spec the running
// processes were started with. It publishes.
func (a *App) recycleOnto(cur *configload.AppSpec) {
	a.clearRapidFails()
	if a.stopping || a.stopped || a.offline {
		a.resizeSlots(a.spec.Load().ProcessesPerApplication)
		a.publish()
		return
	}
	a.recycleSlots(cur)
	a.publish()
}

// recycleSlots gives every slot that runs or starts a process a new one
// started with the spec in force, overlapped: the old process leaves the
// rotation only when its successor is ready (with an explicit
// ASPNETCORE_PORT in old or new spec, stop-then-start). old is the spec the
// running processes were started with. Nothing runs or starts: nothing
// happens. It returns the ids of the start tasks begun; the caller
// publishes.
func (a *App) recycleSlots(old *configload.AppSpec) []uint64 {
	spec := a.spec.Load()
	active := false
	for _, sl := range a.slots {
		active = active || sl.cur != nil || sl.start != nil
		sl.crashloop = false
	}
	a.resizeSlots(spec.ProcessesPerApplication)
	if !active {
		return nil
	}
	// Two processes cannot share an explicit ASPNETCORE_PORT: then the old
	// one is stopped first and the new one spawned after it has exited.
	oldPort, _ := explicitPort(old)
	newPort, _ := explicitPort(spec)
	fixedPort := oldPort != 0 || newPort != 0
	var ids []uint64
	for _, sl := range a.slots {
		a.cancelStart(sl) // a start with the old spec is no longer wanted
		var after *Process
		if fixedPort && sl.cur != nil {
			after = sl.cur
			a.queueStop(sl.cur, old.ShutdownTimeLimit, "recycle")
			sl.cur = nil
		}
		if !a.startSlot(sl, false, after) {
			break
		}
		ids = append(ids, sl.start.id)
	}
	return ids
}
