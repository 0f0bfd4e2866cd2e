package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// This file owns an operator's control of an app, as appcmd recycles,
// stops and starts an IIS application pool: Recycle, Stop and Start, which
// cmd/loopgate's control socket calls for `loopgate recycle`, `stop` and
// `start`. Like everything else they are requests to the app goroutine,
// which answers once the operation is done.

type ctlOp uint8

const (
	ctlRecycle ctlOp = iota
	ctlStop
	ctlStart
)

type ctlRequest struct {
	op     ctlOp
	reason string
	reply  chan ctlReply // cap 1: the app goroutine never blocks on it
}

type ctlReply struct {
	msg string
	err error
}

// ctlWait is a Recycle or Stop that waits for its processes. Owned by run.
type ctlWait struct {
	op      ctlOp
	starts  map[uint64]int // recycle: start task id -> slot, until reported
	oldPIDs []int
	newPIDs []int
	failed  []string
	reply   chan ctlReply
}

// Recycle replaces every process of the app with a new one, overlapped as
// on a web.config change (the new process is ready before the old one
// leaves the rotation and drains; with an explicit ASPNETCORE_PORT,
// stop-then-start), and clears the rapid-fail window. reason is logged and
// counted ("manual" for `loopgate recycle`). It returns once every new
// process is ready or has failed to start (the old one of a slot whose new
// process failed keeps serving), or when ctx ends, which does not stop
// the recycle. An app that runs no process has nothing to recycle (the
// message says so); a stopped one answers ErrAppStopped. reason must be
// one of RecycleReasons.
func (a *App) Recycle(ctx context.Context, reason string) (string, error) {
	if !slices.Contains(RecycleReasons, reason) {
		return "", fmt.Errorf("unknown recycle reason %q", reason)
	}
	return a.control(ctx, ctlRequest{op: ctlRecycle, reason: reason})
}

// Stop stops the app's processes (drained, then the graceful stop of spec
// §4.5 bounded by shutdownTimeLimit) and keeps it stopped: Acquire answers
// Stopped, and neither a request, a crash nor a web.config change starts a
// process, until Start. It returns once every process has exited, or when
// ctx ends. Stopping a stopped app is not an error.
func (a *App) Stop(ctx context.Context) (string, error) {
	return a.control(ctx, ctlRequest{op: ctlStop})
}

// Start undoes Stop: the rapid-fail window is cleared and the next request
// starts the app, as after loopgate's own start. Starting an app that is
// not stopped is not an error.
func (a *App) Start(ctx context.Context) (string, error) {
	return a.control(ctx, ctlRequest{op: ctlStart})
}

func (a *App) control(ctx context.Context, r ctlRequest) (string, error) {
	r.reply = make(chan ctlReply, 1)
	select {
	case a.ctlc <- r:
	case <-a.done:
		return "", ErrStopping
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case rep := <-r.reply:
		return rep.msg, rep.err
	case <-a.done:
		return "", ErrStopping
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// onControl runs a control request on the app goroutine.
func (a *App) onControl(r ctlRequest) {
	if a.stopping {
		r.reply <- ctlReply{err: ErrStopping}
		return
	}
	switch r.op {
	case ctlRecycle:
		a.manualRecycle(r)
	case ctlStop:
		a.manualStop(r)
	case ctlStart:
		a.manualStart(r)
	}
}

func (a *App) manualRecycle(r ctlRequest) {
	switch {
	case a.stopped:
		r.reply <- ctlReply{err: ErrAppStopped}
		return
	case a.offline:
		r.reply <- ctlReply{msg: "nothing to recycle: app_offline.htm is present and no process runs"}
		return
	}
	w := &ctlWait{op: ctlRecycle, starts: map[uint64]int{}, reply: r.reply}
	for _, sl := range a.slots {
		if sl.cur != nil {
			w.oldPIDs = append(w.oldPIDs, sl.cur.pid)
		}
	}
	a.clearRapidFails()
	ids := a.recycleSlots(a.spec.Load())
	if len(ids) == 0 {
		a.publish()
		r.reply <- ctlReply{msg: "nothing to recycle: no process runs (the next request starts the app)"}
		return
	}
	a.countRecycle(r.reason)
	a.logEvent(zerolog.InfoLevel, "recycle", "recycling on request", func(e *zerolog.Event) {
		e.Str("reason", r.reason).Ints("pids", w.oldPIDs)
	})
	for _, id := range ids {
		w.starts[id] = 0
	}
	for _, sl := range a.slots {
		if sl.start != nil {
			if _, ok := w.starts[sl.start.id]; ok {
				w.starts[sl.start.id] = sl.idx
			}
		}
	}
	a.ctlWaits = append(a.ctlWaits, w)
	a.publish()
}

func (a *App) manualStop(r ctlRequest) {
	if a.stopped {
		r.reply <- ctlReply{msg: "already stopped"}
		return
	}
	a.stopped = true
	var pids []int
	for _, sl := range a.slots {
		if sl.cur != nil {
			pids = append(pids, sl.cur.pid)
		}
	}
	a.logEvent(zerolog.InfoLevel, "app_stopped", "stopped on request; requests get 503 until it is started", func(e *zerolog.Event) {
		e.Ints("pids", pids)
	})
	a.stopAll(a.spec.Load().ShutdownTimeLimit, "stop")
	a.ctlWaits = append(a.ctlWaits, &ctlWait{op: ctlStop, oldPIDs: pids, reply: r.reply})
	a.publish()
	a.checkCtlWaits(event{kind: evStopped})
}

func (a *App) manualStart(r ctlRequest) {
	if !a.stopped {
		r.reply <- ctlReply{msg: "already started"}
		return
	}
	a.stopped = false
	a.clearRapidFails()
	a.logEvent(zerolog.InfoLevel, "app_started", "started on request; the next request starts its processes", nil)
	a.publish()
	msg := "started; the next request starts its processes"
	if a.offline {
		msg = "started; app_offline.htm is present, so requests get its page until it is removed"
	}
	r.reply <- ctlReply{msg: msg}
}

// checkCtlWaits answers the control requests that ev completes: a recycle
// once each of its start tasks has reported, a stop once no process of the
// app is left.
func (a *App) checkCtlWaits(ev event) {
	if len(a.ctlWaits) == 0 {
		return
	}
	idle := a.starters == 0 && len(a.stoppers) == 0 && len(a.pendingStops) == 0
	keep := a.ctlWaits[:0]
	for _, w := range a.ctlWaits {
		switch w.op {
		case ctlRecycle:
			if slot, ok := w.starts[ev.id]; ok && ev.kind == evStarted {
				delete(w.starts, ev.id)
				switch {
				case ev.p != nil:
					w.newPIDs = append(w.newPIDs, ev.p.pid)
				case ev.fail != nil && ev.fail.err != nil:
					w.failed = append(w.failed, "slot "+strconv.Itoa(slot)+": "+ev.fail.err.Error())
				default:
					w.failed = append(w.failed, "slot "+strconv.Itoa(slot)+": start cancelled")
				}
			}
			if len(w.starts) > 0 {
				keep = append(keep, w)
				continue
			}
			w.reply <- w.recycleReply()
		case ctlStop:
			if !idle {
				keep = append(keep, w)
				continue
			}
			msg := "stopped; no process was running"
			if len(w.oldPIDs) > 0 {
				msg = "stopped; " + pidList(w.oldPIDs) + " exited"
			}
			w.reply <- ctlReply{msg: msg}
		}
	}
	clear(a.ctlWaits[len(keep):])
	a.ctlWaits = keep
}

func (w *ctlWait) recycleReply() ctlReply {
	msg := fmt.Sprintf("recycled: %d new process(es) ready (%s)", len(w.newPIDs), pidList(w.newPIDs))
	if len(w.oldPIDs) > 0 {
		msg += ", replacing " + pidList(w.oldPIDs)
	}
	if len(w.failed) == 0 {
		return ctlReply{msg: msg}
	}
	return ctlReply{msg: msg, err: fmt.Errorf("%d new process(es) failed to start, the slot's old process (if it had one) keeps serving: %s",
		len(w.failed), strings.Join(w.failed, "; "))}
}

func pidList(pids []int) string {
	if len(pids) == 0 {
		return "none"
	}
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return "pids " + strings.Join(s, " ")
}
