package supervisor

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

// mode is what a view tells Acquire to do when it holds no ready process.
type mode uint8

const (
	modeIdle     mode = iota // nothing runs or starts: ask the owner to start
	modeStarting             // a start is under way: wait for it
	modeReady                // procs holds the ready processes
	modeFailed               // the last start failed; a newcomer starts again
	modeBlocked              // rapid-fail window full: StartFailed at once
	modeOffline              // app_offline.htm: Offline at once
	modeStopping             // shutting down: Stopping at once
	modeStopped              // stopped by an operator: Stopped at once
)

// state is how a mode shows in AppStatus: a failed start that the window
// does not block shows as idle, since the next request starts again.
func (m mode) state() State {
	switch m {
	case modeStarting:
		return StateStarting
	case modeReady:
		return StateReady
	case modeBlocked:
		return StateCrashLoop
	case modeOffline:
		return StateOffline
	case modeStopping:
		return StateStopping
	case modeStopped:
		return StateStopped
	}
	return StateIdle
}

// view is an immutable snapshot of an app's routing state, published by the
// app goroutine through an atomic pointer so Acquire takes no lock and
// allocates nothing. changed is closed when a newer view replaces it.
type view struct {
	procs   []*Process
	mode    mode
	epoch   uint64 // number of the latest start begun
	changed chan struct{}
}

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

type statusSnap struct {
	st    AppStatus
	procs []*Process // parallel to st.Processes
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

// Acquire returns a ready process (Ready) or says why there is none. The
// first call starts the app; concurrent callers share that start. It blocks
// only while a start is under way (each of its two attempts bounded by
// startupTimeLimit) or until ctx is done, which returns (nil, Stopping).
// Requests rotate round robin over the ready processes. On a ready app it
// takes no lock and allocates nothing.
func (a *App) Acquire(ctx context.Context) (*Process, Outcome) {
	var need uint64 // the start epoch whose failure this caller reports
	for {
		v := a.view.Load()
		switch v.mode {
		case modeReady:
			n := uint32(len(v.procs))
			for range n {
				p := v.procs[a.rr.Add(1)%n]
				if p.acquire() {
					return p, Ready
				}
			}
			// Every process in this view was retired since it was loaded; a
			// newer view is already published.
		case modeBlocked:
			return nil, StartFailed
		case modeStopping:
			return nil, Stopping
		case modeStopped:
			return nil, Stopped
		case modeOffline:
			if !a.pollOffline() {
				return nil, Offline
			}
			// The file looked gone; the owner publishes a new view either way.
		case modeStarting:
			if need == 0 {
				need = v.epoch
			}
		case modeIdle:
			if need == 0 {
				need = v.epoch + 1
			}
			a.kick()
		case modeFailed:
			if need == 0 {
				need = v.epoch + 1
			}
			if v.epoch >= need {
				return nil, StartFailed
			}
			a.kick()
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			return nil, Stopping
		}
	}
}

func (a *App) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Usage reads the CPU time and memory of the app's processes from their
// cgroups. It reports false without cgroups (Options.Contain unset or not
// possible here). It reads a few files: call it for /status and metrics,
// not per request.
func (a *App) Usage() (Usage, bool) {
	u, err := a.s.tree.Usage(a.vpath)
	if err != nil {
		return Usage{}, false
	}
	return Usage{CPU: u.CPU, MemoryBytes: u.Memory}, true
}

// Status returns a copy of the app's state.
func (a *App) Status() AppStatus {
	sn := a.status.Load()
	st := sn.st
	st.Processes = slices.Clone(sn.st.Processes)
	st.RecyclesByReason = maps.Clone(sn.st.RecyclesByReason)
	for i, p := range sn.procs {
		if p != nil {
			st.Processes[i].Requests = p.requests.Load()
		}
	}
	st.Starts = a.starts.Load()
	return st
}

// publishStatus stores a fresh status snapshot. Called by run after every
// change (and once by newApp).
func (a *App) publishStatus() {
	spec := a.spec.Load()
	st := AppStatus{
		Name:                a.vpath,
		VirtualPath:         a.vpath,
		Dir:                 spec.Dir,
		ConfigError:         a.configError,
		LastStartError:      a.lastStartError,
		StartFailures:       a.startFailures,
		Release:             a.release,
		Crashes:             a.crashes,
		Restarts:            a.restarts,
		RapidFailBlocks:     a.blocks,
		Recycles:            a.recycles,
		RecyclesByReason:    make(map[string]uint64, len(RecycleReasons)),
		ConfigReloadsOK:     a.reloadsOK,
		ConfigReloadsFailed: a.reloadsFailed,
		Offline:             a.offline,
		NotReady:            a.notReady(),
	}
	for _, r := range RecycleReasons {
		st.RecyclesByReason[r] = a.recyclesBy[r]
	}
	sn := &statusSnap{st: st}
	sn.st.State = a.mode().state()
	for _, sl := range a.slots {
		ps := ProcessStatus{Slot: sl.idx, Restarts: sl.restarts, LastExit: sl.lastExit}
		switch {
		case sl.cur != nil:
			ps.State = StateReady
			ps.PID, ps.Port, ps.Started = sl.cur.pid, sl.cur.port, sl.cur.started
		case sl.start != nil:
			ps.State = StateStarting
		case a.stopping:
			ps.State = StateStopping
		case a.stopped:
			ps.State = StateStopped
		case a.offline:
			ps.State = StateOffline
		case sl.crashloop:
			ps.State = StateCrashLoop
		default:
			ps.State = StateIdle
		}
		sn.st.Processes = append(sn.st.Processes, ps)
		sn.procs = append(sn.procs, sl.cur)
	}
	a.status.Store(sn)
}

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
