package supervisor

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func ctl(t *testing.T, f func(ctx context.Context) (string, error)) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return f(ctx)
}

// TestStopKeepsTheAppDown: a stopped app answers Stopped, and neither a
// request, a web.config change nor a recycle starts a process; Start lets
// the next request start it, with the configuration now in force.
func TestStopKeepsTheAppDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := loadedApp(t, `shutdownTimeLimit="2"`, "")
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()

		msg, err := ctl(t, a.Stop)
		if err != nil || msg != "stopped; pids "+itoa(p.pid)+" exited" {
			t.Fatalf("Stop: %q, %v", msg, err)
		}
		if f.alive() != 0 {
			t.Fatalf("%d processes alive after Stop returned", f.alive())
		}
		if o := acquireOutcome(a); o != Stopped {
			t.Fatalf("Acquire of a stopped app: %v", o)
		}
		if st := a.Status(); st.State != StateStopped || st.Processes[0].State != StateStopped || st.Processes[0].PID != 0 {
			t.Errorf("status %+v", st)
		}
		webConfig(t, spec.Dir, `shutdownTimeLimit="3"`, "")
		if errs := s.Reload(); len(errs) != 0 {
			t.Fatal(errs)
		}
		if _, err := ctl(t, func(ctx context.Context) (string, error) { return a.Recycle(ctx, RecycleManual) }); !errors.Is(err, ErrAppStopped) {
			t.Errorf("Recycle of a stopped app: %v", err)
		}
		time.Sleep(time.Minute)
		if n := len(f.spawned()); n != 1 {
			t.Fatalf("%d spawns while stopped", n)
		}
		if msg, err := ctl(t, a.Stop); err != nil || msg != "already stopped" {
			t.Errorf("second Stop: %q, %v", msg, err)
		}

		if msg, err := ctl(t, a.Start); err != nil || !strings.HasPrefix(msg, "started") {
			t.Fatalf("Start: %q, %v", msg, err)
		}
		p2 := mustAcquire(t, a)
		p2.Release()
		if len(f.spawned()) != 2 || a.Spec().ShutdownTimeLimit != 3*time.Second {
			t.Errorf("after Start: %d spawns, shutdownTimeLimit %v", len(f.spawned()), a.Spec().ShutdownTimeLimit)
		}
		if msg, err := ctl(t, a.Start); err != nil || msg != "already started" {
			t.Errorf("second Start: %q, %v", msg, err)
		}
		containsAll(t, "log", logs.String(), `"event":"app_stopped"`, `"event":"app_started"`)
	})
}

// TestStopDuringAStart: a start under way is cancelled, and Stop answers
// only once what it spawned is gone.
func TestStopDuringAStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: 10 * time.Second} })
		s, _ := fakeSup(t, f, Options{}, testSpec(t))
		defer stop(t, s)
		a := s.Apps()[0]
		outcome := make(chan Outcome, 1)
		go func() { outcome <- acquireOutcome(a) }()
		time.Sleep(time.Second)
		synctest.Wait()
		if len(f.spawned()) != 1 {
			t.Fatalf("%d spawns", len(f.spawned()))
		}
		if _, err := ctl(t, a.Stop); err != nil {
			t.Fatal(err)
		}
		if f.alive() != 0 {
			t.Errorf("%d processes alive after Stop returned", f.alive())
		}
		if o := <-outcome; o != Stopped {
			t.Errorf("the request waiting for the start got %v", o)
		}
	})
}

// TestRecycle: a recycle replaces each process, the new one ready before
// the old one stops, and counts with reason manual; one whose new process
// fails keeps its old one and says so; with nothing running there is
// nothing to recycle.
func TestRecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failNext atomic.Bool
		f := newFakeOS(func(*Cmd) behaviour {
			if failNext.Load() {
				return behaviour{listenAfter: -1, exitAfter: time.Second}
			}
			return behaviour{listenAfter: time.Second}
		})
		spec := testSpec(t)
		spec.ProcessesPerApplication = 2
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		recycle := func() (string, error) {
			return ctl(t, func(ctx context.Context) (string, error) { return a.Recycle(ctx, RecycleManual) })
		}
		if msg, err := recycle(); err != nil || !strings.HasPrefix(msg, "nothing to recycle: no process runs") {
			t.Errorf("Recycle of an idle app: %q, %v", msg, err)
		}
		p := mustAcquire(t, a)
		p.Release()
		for len(a.Status().Processes) != 2 || a.Status().Processes[1].PID == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		old := f.spawned()
		msg, err := recycle()
		if err != nil || !strings.HasPrefix(msg, "recycled: 2 new process(es) ready") {
			t.Fatalf("Recycle: %q, %v", msg, err)
		}
		if len(f.spawned()) != 4 {
			t.Fatalf("%d spawns after the recycle", len(f.spawned()))
		}
		time.Sleep(10 * time.Second)
		for _, o := range old {
			if !o.exitedNow() {
				t.Errorf("old process %d still runs", o.pid)
			}
		}
		if st := a.Status(); st.Recycles != 1 || st.RecyclesByReason[RecycleManual] != 1 || st.RecyclesByReason[RecycleConfig] != 0 {
			t.Errorf("recycles %d by reason %v", st.Recycles, st.RecyclesByReason)
		}
		containsAll(t, "log", logs.String(), `"event":"recycle","reason":"manual"`)

		failNext.Store(true)
		before := a.Status().Processes
		msg, err = recycle()
		if err == nil || !strings.Contains(err.Error(), "2 new process(es) failed to start") {
			t.Fatalf("Recycle whose new processes fail: %q, %v", msg, err)
		}
		after := a.Status().Processes
		for i := range before {
			if after[i].PID != before[i].PID || after[i].State != StateReady {
				t.Errorf("slot %d: %+v before, %+v after a failed recycle", i, before[i], after[i])
			}
		}
		if _, err := ctl(t, func(ctx context.Context) (string, error) { return a.Recycle(ctx, "because") }); err == nil {
			t.Error("an unknown reason was accepted")
		}
	})
}
