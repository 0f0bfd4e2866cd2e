// An app and its process slots (App, slot and the task records), its
// construction, its accessors, and the helpers the app goroutine uses:
// helper goroutines, lifecycle log events, the diagnostic log, OOM kill
// and recycle counts.

package supervisor

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

// App is one app (one web.config, one virtual path) and its process slots.
// It is safe for concurrent use. One goroutine (run) owns its state
// machine; Acquire reads the published view and talks to that goroutine
// only through channels.
type App struct {
	s           *Supervisor
	vpath       string
	dir         string
	offlinePath string
	log         zerolog.Logger // Options.Logger with the app field

	spec     atomic.Pointer[configload.AppSpec]
	view     atomic.Pointer[view]
	rr       atomic.Uint32
	page     atomic.Pointer[[]byte]
	lastPoll atomic.Int64 // unix ns of the last app_offline.htm check on the request path
	status   atomic.Pointer[statusSnap]
	diag     atomic.Pointer[diagLog]
	starts   atomic.Uint64

	wake    chan struct{}   // Acquire: please start (cap 1, never blocks)
	recheck chan struct{}   // Acquire: app_offline.htm may have changed (cap 1)
	unreach chan *Process   // Process.Unreachable (cap 8)
	reloadc chan chan error // Reload
	ctlc    chan ctlRequest // Recycle, Stop, Start (control.go)
	poolc   chan struct{}   // Process.Release: periodicRestartRequests reached (cap 1)
	events  chan event      // from the app's helper goroutines
	done    chan struct{}   // closed when run has finished for good

	helpers sync.WaitGroup // goroutines that send on events

	// oomKills is the app cgroup's oom_kill count last claimed
	// (claimOOMKill), by the goroutine that reaps a process or by run.
	oomKills atomic.Uint64

	// Everything below is owned by run.
	slots          []*slot
	offline        bool
	stopping       bool
	stopped        bool // App.Stop: stays down until App.Start
	ctlWaits       []*ctlWait
	blocked        bool
	lastFailed     bool
	epoch          uint64
	starters       int // start goroutines not yet reported back
	stoppers       map[*Process]struct{}
	ports          map[int]*Process // registered with Options.Ports
	pendingStops   []pendingStop
	unblockTimer   *time.Timer // fires when the rapid-fail window frees up
	fails          rapidFailWindow
	crashes        uint64
	restarts       uint64
	blocks         uint64
	recycles       uint64
	recyclesBy     map[string]uint64 // by reason (RecycleReasons)
	reloadsOK      uint64
	reloadsFailed  uint64
	configError    string
	lastStartError string
	startFailures  uint64
	// release is the directory the app's directory resolved to (every
	// symbolic link followed) when the spec in force was loaded: the
	// release running (release.go). "" when it cannot be resolved.
	release string
	// stdoutLogs are the stdout log files its processes write; safe for
	// concurrent use (output readers, pruning, SIGUSR1).
	stdoutLogs stdoutLogs
	pool       poolState // pool.go
}

// slot is one of processesPerApplication process slots. Owned by run.
type slot struct {
	idx       int
	cur       *Process   // ready and in rotation
	start     *startTask // a start under way (first start, restart or recycle)
	crashloop bool       // refused a restart by the rapid-fail window
	restarts  uint64
	lastExit  string
	hold      time.Time // a recycle of this slot failed: no periodic recycle before
}

type startTask struct {
	id     uint64
	cancel context.CancelFunc
	spec   *configload.AppSpec
	after  *Process // spawn only after it has exited; nil: at once
	// reason is set for a recycle by recycleSlot: the process it replaces
	// is stopped with stopLimit and this reason once the new one is ready.
	reason    string
	stopLimit time.Duration
}

type pendingStop struct {
	p      *Process
	limit  time.Duration
	reason string
}

func newApp(s *Supervisor, spec *configload.AppSpec) *App {
	a := &App{
		s:           s,
		vpath:       spec.VirtualPath,
		dir:         spec.Dir,
		offlinePath: filepath.Join(spec.Dir, "app_offline.htm"),
		log:         s.log.With().Str("app", spec.VirtualPath).Logger(),
		wake:        make(chan struct{}, 1),
		recheck:     make(chan struct{}, 1),
		unreach:     make(chan *Process, 8),
		reloadc:     make(chan chan error),
		ctlc:        make(chan ctlRequest),
		poolc:       make(chan struct{}, 1),
		events:      make(chan event, 16),
		done:        make(chan struct{}),
		stoppers:    map[*Process]struct{}{},
		ports:       map[int]*Process{},
		recyclesBy:  map[string]uint64{},
	}
	a.unblockTimer = time.NewTimer(time.Hour)
	a.unblockTimer.Stop()
	a.spec.Store(spec)
	a.release = resolveDir(spec.Dir)
	a.page.Store(new([]byte))
	a.setDiag(spec)
	a.resizeSlots(spec.ProcessesPerApplication)
	a.view.Store(&view{mode: modeIdle, changed: make(chan struct{})})
	a.publishStatus()
	// Before any request can see the app: present before the first request
	// means it never starts.
	a.checkOffline()
	return a
}

// Name is a bounded label for metrics: the virtual path.
func (a *App) Name() string { return a.vpath }

// VirtualPath is where the app is mounted ("/" or e.g. "/api").
func (a *App) VirtualPath() string { return a.vpath }

// Spec is the spec now in force. It changes when a web.config change is
// accepted; processes started before keep running with the old one until
// they are recycled.
func (a *App) Spec() *configload.AppSpec { return a.spec.Load() }

// OfflinePage returns the bytes of app_offline.htm as last read (empty for
// an empty or unreadable file). Valid after Acquire returned Offline. The
// caller must not modify it.
func (a *App) OfflinePage() []byte { return *a.page.Load() }

// claimOOMKill reports whether the kernel's OOM killer has killed a
// process of the app since the last claim: with a memoryLimit, the reason
// a process died. The kernel counts the kill as it sends SIGKILL, so the
// count has moved by the time the victim is reaped. Safe for concurrent
// use: each kill is claimed once.
func (a *App) claimOOMKill() bool {
	n, ok := a.s.tree.OOMKills(a.vpath)
	for ok {
		seen := a.oomKills.Load()
		if n <= seen {
			return false
		}
		if a.oomKills.CompareAndSwap(seen, n) {
			return true
		}
	}
	return false
}

// countRecycle counts a recycle for reason (one of RecycleReasons).
func (a *App) countRecycle(reason string) {
	a.recycles++
	a.recyclesBy[reason]++
}

// goHelper runs f on a goroutine that may send on a.events; run keeps
// receiving until every such goroutine has finished.
func (a *App) goHelper(f func()) {
	a.helpers.Add(1)
	go func() {
		defer a.helpers.Done()
		f()
	}()
}

func (a *App) send(ev event) { a.events <- ev }

// logEvent writes a lifecycle event to loopgate's log and to the app's
// diagnostic log.
func (a *App) logEvent(level zerolog.Level, name, msg string, fields func(e *zerolog.Event)) {
	d := a.diag.Load()
	for _, l := range []*zerolog.Logger{&a.log, &d.log} {
		e := l.WithLevel(level)
		if e == nil {
			continue
		}
		e = e.Str("event", name)
		if fields != nil {
			fields(e)
		}
		e.Msg(msg)
	}
}

// setDiag opens the diagnostic log spec asks for and closes the previous one.
func (a *App) setDiag(spec *configload.AppSpec) {
	d, err := openDiagLog(spec, a.log)
	if err != nil {
		a.log.Warn().Err(err).Msg("cannot open the app's debug log")
	}
	if old := a.diag.Swap(&d); old != nil {
		old.close()
	}
}
