// The request path's side of an app: the view the app goroutine publishes
// (mode, the ready processes, the start epoch) and Acquire, which reads it
// without a lock and wakes the goroutine only when nothing is ready.

package supervisor

import "context"

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
