package supervisor

// Releases (issue 16, part 2): an app directory given as a symbolic link,
// laid out as deploy tools do (/srv/app/current -> releases/42). When the
// link is switched to another release, the app is recycled onto it with
// zero downtime, as for a web.config change: every running slot gets a new
// process started in the new release (its working directory and a
// relative processPath resolve through the link at spawn time), and the
// old one is drained and stopped once the new one is ready. A release
// whose web.config is invalid, or whose process fails to start, never
// takes traffic: the old release keeps serving and the error is in the
// log, /status and metrics (see reload and onStartFailed).

import (
	"os"
	"path/filepath"
	"time"
)

// releasePoll is how often the link is re-resolved besides the directory
// watch on its parent: the watch sees a switch of the link itself within
// configDebounce, the poll also a switch of a link further up the path.
const releasePoll = time.Second

// resolveDir is the directory dir names now, every symbolic link resolved;
// "" when it cannot be resolved (gone, or the fake OS of the tests).
func resolveDir(dir string) string {
	r, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	return r
}

// releaseWatch follows the link of a linked app directory. Owned by run.
type releaseWatch struct {
	watcher Watcher          // on the link's parent directory; nil without one
	events  <-chan string    // watcher's events, nil without one
	poll    <-chan time.Time // releasePoll ticks; nil when dir involves no link
	ticker  *time.Ticker
	seen    string // the release last acted on
}

// watchRelease starts following a's directory when some component of its
// path is a symbolic link; otherwise it returns a releaseWatch that never
// fires.
func (a *App) watchRelease() *releaseWatch {
	rw := &releaseWatch{seen: a.release}
	if a.release == "" || a.release == filepath.Clean(a.dir) {
		return rw
	}
	rw.ticker = time.NewTicker(releasePoll)
	rw.poll = rw.ticker.C
	if fi, err := os.Lstat(a.dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if w, err := a.s.os.Watch(filepath.Dir(a.dir)); err == nil {
			rw.watcher, rw.events = w, w.Events()
		}
	}
	return rw
}

func (rw *releaseWatch) close() {
	if rw.ticker != nil {
		rw.ticker.Stop()
	}
	if rw.watcher != nil {
		rw.watcher.Close()
	}
}

// isLinkEvent reports whether a change in the parent directory may be a
// switch of the link ("" means events were lost).
func (a *App) isLinkEvent(name string) bool {
	return name == "" || name == filepath.Base(a.dir)
}

// switched reports whether the link now names another release than the
// one last acted on, and remembers the new one.
func (rw *releaseWatch) switched(dir string) (string, bool) {
	r := resolveDir(dir)
	if r == "" || r == rw.seen {
		return r, false
	}
	rw.seen = r
	return r, true
}

// ExplicitPort is the ASPNETCORE_PORT the spec in force sets for the app,
// or 0 when a port is chosen for each start (or the value is invalid). Two
// processes of such an app cannot run at once: a binary upgrade, which
// starts the new loopgate's backends beside the old one's, checks it.
func (a *App) ExplicitPort() int {
	p, _ := explicitPort(a.spec.Load())
	return p
}
