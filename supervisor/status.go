// An app's status as /status, metrics and the control socket read it: the
// snapshot the app goroutine publishes after every change (publishStatus),
// its copy (Status), and the cgroups' CPU and memory (Usage).

package supervisor

import (
	"maps"
	"slices"
)

type statusSnap struct {
	st    AppStatus
	procs []*Process // parallel to st.Processes
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
