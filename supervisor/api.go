package supervisor

import (
	"time"

	"github.com/rs/zerolog"
)

// This file is the contract between supervisor and its callers (fastpath,
// cmd/loopgate, the admin endpoint). Keep these names and signatures stable;
// everything behind them is the supervisor's own business.

// Outcome is what Acquire tells the forwarder about an app.
type Outcome uint8

const (
	// Ready: a live process was returned; the caller must call Release on it
	// exactly once when the request is done.
	Ready Outcome = iota
	// StartFailed: no process could be started, or the rapid-fail window is
	// full. The forwarder answers 502.5 (or a bare 502 with
	// disableStartUpErrorPage).
	StartFailed
	// Offline: app_offline.htm is present. The forwarder answers 503 with
	// App.OfflinePage() as text/html.
	Offline
	// Stopping: the app or loopgate is shutting down. The forwarder answers a
	// bare 503.
	Stopping
	// Stopped: an operator stopped the app (App.Stop, `loopgate stop`), as
	// IIS stops an application pool. The forwarder answers 503 with the
	// page HTTP.sys gives for a stopped pool, until App.Start.
	Stopped
)

func (o Outcome) String() string {
	switch o {
	case Ready:
		return "ready"
	case StartFailed:
		return "start-failed"
	case Offline:
		return "offline"
	case Stopping:
		return "stopping"
	case Stopped:
		return "stopped"
	}
	return "unknown"
}

// PortRegistry is told about backend ports as backends become ready and go
// away. The eBPF accelerator implements it; nil means no acceleration.
type PortRegistry interface {
	AddPort(port uint16) error
	RemovePort(port uint16) error
}

// Upstream is the forwarder's per-process state (its connection pool). The
// supervisor creates one through Options.NewUpstream before a process is
// handed out and closes it after the process has been retired and drained.
type Upstream interface {
	Close()
}

// Drainer is an Upstream with connections to close gracefully before the
// process is asked to stop: an h2c app's HTTP/2 connections, which end
// with a GOAWAY. Drain is called once, after the retired process's last
// request was released (or the drain wait ended), before the shutdown
// request.
type Drainer interface {
	Drain()
}

// Options configures a Supervisor. The zero value is usable: nothing is
// logged, backends inherit no environment, there is no eBPF acceleration and
// the real operating system is used.
type Options struct {
	// Logger receives lifecycle events (field event: start, ready,
	// start_failed, crash, restart, rapid_fail_block, app_offline,
	// app_online, recycle, config_error, stop, kill) and, without
	// stdoutLogEnabled, the backends' output line by line. The zero value
	// logs nothing.
	Logger zerolog.Logger
	// Environ is the environment backends inherit and configload expands
	// against: os.Environ() in production. Entries are NAME=value.
	Environ []string
	// Ports is told about backend ports as backends become ready and after
	// they stop. nil: no eBPF acceleration.
	Ports PortRegistry
	// NewUpstream makes the forwarder's per-process state (its connection
	// pool to p.Addr()). Called once per process, from the app's own
	// goroutine, before the process is first handed out; Close is called
	// after the process is retired and its in-flight requests are done.
	// nil: Process.Upstream returns nil.
	NewUpstream func(p *Process) Upstream
	// OS is the seam over spawning, signals, port probes, the shutdown
	// request and directory watching. nil means the real operating system.
	OS OS
	// Contain (with the real OS only) keeps each backend's whole process
	// tree from outliving its backend or loopgate: every backend process
	// runs in a cgroup of its own below loopgate's cgroup, killed as a whole
	// (cgroup.kill) when the backend stops, crashes or is recycled, and a
	// keeper process kills them all if loopgate dies, even by SIGKILL
	// (internal/cgroup). Without write access to a cgroup v2 hierarchy the
	// keeper kills the backends' process groups instead. The program's main
	// must call cgroup.KeeperMain first. false: process groups and
	// Pdeathsig for the direct child only.
	Contain bool
	// ContainKeeper is the executable started as the keeper; "" means this
	// program (/proc/self/exe).
	ContainKeeper string
}

// Why an app's processes were recycled: the reason field of the recycle
// log line, AppStatus.RecyclesByReason and the reason label of
// loopgate_app_recycles_total. A fixed set, so the label is bounded.
// Each is counted once per process replaced, but config once per app.
const (
	RecycleConfig = "config" // web.config changed
	RecycleManual = "manual" // an operator asked (App.Recycle, `loopgate recycle`)
	// The app pool settings (pool.go; the pings, ping.go).
	RecycleTime     = "time"     // the process was up for periodicRestartTime
	RecycleRequests = "requests" // it served periodicRestartRequests requests
	RecycleMemory   = "memory"   // its tree used more than periodicRestartPrivateMemory
	RecycleSchedule = "schedule" // a time of periodicRestartSchedule came
	// RecyclePing: it answered no ping for pingResponseTime; it is killed
	// once its replacement is ready, without a graceful stop.
	RecyclePing = "ping"
	// RecycleRelease: the app directory is a symbolic link that now names
	// another release (release.go); once per app.
	RecycleRelease = "release"
)

// RecycleReasons lists every recycle reason.
var RecycleReasons = []string{RecycleConfig, RecycleManual, RecycleTime, RecycleRequests, RecycleMemory, RecycleSchedule, RecyclePing, RecycleRelease}

// State is where an app or one of its process slots is in its life.
type State string

const (
	// StateIdle: nothing runs and nothing is starting; the next request
	// starts the app. Also the state after a failed start that is not (yet)
	// blocked by the rapid-fail window.
	StateIdle State = "idle"
	// StateStarting: a process is starting and not yet listening.
	StateStarting State = "starting"
	// StateReady: at least one process is listening and taking requests.
	StateReady State = "ready"
	// StateCrashLoop: rapidFailsPerMinute was exceeded; requests get 502.5
	// until the sliding 60 s window frees up.
	StateCrashLoop State = "crashloop"
	// StateOffline: app_offline.htm is present.
	StateOffline State = "offline"
	// StateStopping: the app's processes are being stopped for good
	// (loopgate shutdown), or, for one process, it is being drained and
	// stopped.
	StateStopping State = "stopping"
	// StateStopped: an operator stopped the app (App.Stop); nothing runs
	// and requests get 503 until App.Start.
	StateStopped State = "stopped"
)

// AppStatus is a point-in-time copy of an app's state for /status and
// metrics. It is a plain value: callers own it.
type AppStatus struct {
	Name, VirtualPath, Dir string
	// State is the app's overall state: stopping, stopped or offline when so,
	// otherwise ready if any slot is ready, else starting, crashloop or idle.
	State State
	// ConfigError is the last web.config error while the previous spec keeps
	// running; "" if none.
	ConfigError string
	// LastStartError says why the last start failed (the last attempt's
	// error); "" until a start fails. It is kept after later successes so an
	// operator can see what went wrong.
	LastStartError string
	// Starts counts processes spawned (each start attempt). Crashes counts
	// exits of ready processes that were not asked to stop. Restarts counts
	// starts after a crash. RapidFailBlocks counts the times the rapid-fail
	// window refused a start. Recycles counts recycles for every reason: a
	// config change that replaced the running spec once per app, the
	// others once per process replaced.
	Starts, Crashes, Restarts, RapidFailBlocks, Recycles uint64
	// RecyclesByReason splits Recycles by reason; it holds every one of
	// RecycleReasons, zero included.
	RecyclesByReason map[string]uint64
	// NotReady says why the app holds readiness (/readyz) back, "" when it
	// does not. Only a startMode AlwaysRunning app does, while none of its
	// processes is ready (before its first start is ready, while it is
	// restarted, while the rapid-fail window blocks it) and it is not
	// offline, stopped or stopping: such an app is meant to be up before traffic
	// comes. An OnDemand app starts on its first request and never holds
	// readiness back.
	NotReady string
	// StartFailures counts starts that failed (the process exited or did
	// not listen within startupTimeLimit), recycles' included.
	StartFailures uint64
	// Release is the directory the app directory resolved to, every
	// symbolic link followed, when the configuration in force was loaded:
	// with /srv/app/current -> releases/42, /srv/app/releases/42. "" when
	// it could not be resolved.
	Release string
	// ConfigReloadsOK and ConfigReloadsFailed count web.config re-reads
	// (SIGHUP or a file change) that parsed and that failed.
	ConfigReloadsOK, ConfigReloadsFailed uint64
	// Offline is true while app_offline.htm is present.
	Offline bool
	// Processes lists the slots (processesPerApplication of them) in slot
	// order, with the process each one runs, if any.
	Processes []ProcessStatus
}

// ProcessStatus is one process slot in an AppStatus.
type ProcessStatus struct {
	// Slot is the slot index, 0 to processesPerApplication-1. PID and Port
	// are 0 when the slot runs no process.
	Slot, PID, Port int
	State           State
	// Started is when the slot's current process was spawned (zero if none).
	Started time.Time
	// Restarts counts restarts of this slot after a crash.
	Restarts uint64
	// Requests counts requests served (Acquire→Release) by the current
	// process.
	Requests uint64
	// LastExit is the last exit status of this slot's process, e.g.
	// "exit status 3" or "signal: killed"; "" if none.
	LastExit string
}

// Usage is what an app's processes have used, read from their cgroups
// (Options.Contain). It is a plain value.
type Usage struct {
	// CPU is the user and system CPU time of every process the app has run
	// since loopgate started, exited ones included.
	CPU time.Duration
	// MemoryBytes is the memory the app's processes use now: the memory
	// controller's memory.current where it is enabled for loopgate's
	// cgroups, else the sum of their resident set sizes.
	MemoryBytes int64
}
