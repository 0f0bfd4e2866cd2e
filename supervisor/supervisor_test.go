package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/loopgate/loopgate/configload"
)

func TestLazyStartConcurrentFirstRequestsShareOneStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: 300 * time.Millisecond} })
		spec := testSpec(t)
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]

		synctest.Wait()
		if n := len(f.spawned()); n != 0 {
			t.Fatalf("%d processes spawned before the first request", n)
		}
		if st := a.Status().State; st != StateIdle {
			t.Fatalf("state before the first request = %s, want idle", st)
		}
		var wg sync.WaitGroup
		got := make(chan *Process, 100)
		for range 100 {
			wg.Go(func() {
				p := mustAcquire(t, a)
				got <- p
				p.Release()
			})
		}
		wg.Wait()
		close(got)
		first := <-got
		for p := range got {
			if p != first {
				t.Fatalf("concurrent first requests got different processes %d and %d", p.PID(), first.PID())
			}
		}
		if n := len(f.spawned()); n != 1 {
			t.Fatalf("%d processes spawned for 100 concurrent first requests, want 1", n)
		}
		st := a.Status()
		if st.State != StateReady || st.Starts != 1 || st.Processes[0].Requests != 100 || st.Processes[0].PID != first.PID() {
			t.Fatalf("status = %+v", st)
		}
		// A request that never reached the process is not counted.
		mustAcquire(t, a).ReleaseUnused()
		if n := a.Status().Processes[0].Requests; n != 100 {
			t.Errorf("after ReleaseUnused, requests = %d, want 100", n)
		}
	})
}

func TestProcessIdentity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.VirtualPath = "/api"
		spec.Arguments = []string{"--urls", "http://127.0.0.1:%ASPNETCORE_PORT%"}
		s, _ := fakeSup(t, f, Options{Environ: []string{"HOME=/home/x"}}, spec)
		defer stop(t, s)
		p := mustAcquire(t, s.Apps()[0])
		defer p.Release()
		fp := f.spawned()[0]
		if p.PID() != fp.pid || p.Port() != fp.port || p.Addr() != "127.0.0.1:"+itoa(fp.port) || p.Token() != fp.token() {
			t.Fatalf("process %d %d %s %s does not match what was spawned: %+v", p.PID(), p.Port(), p.Addr(), p.Token(), fp.cmd)
		}
		if p.Port() < 10000 || p.Port() > 48000 {
			t.Errorf("random port %d outside 10000-48000", p.Port())
		}
		if len(p.Token()) != 36 {
			t.Errorf("token %q is not a UUID", p.Token())
		}
		if fp.cmd.Path != filepath.Join(spec.Dir, "app") || fp.cmd.Dir != spec.Dir {
			t.Errorf("spawned %s in %s", fp.cmd.Path, fp.cmd.Dir)
		}
		if want := "http://127.0.0.1:" + itoa(p.Port()); len(fp.cmd.Args) != 2 || fp.cmd.Args[1] != want {
			t.Errorf("args %q, want the port substituted: %s", fp.cmd.Args, want)
		}
		if envLookup(fp.cmd.Env, envApplPath) != "/api" || envLookup(fp.cmd.Env, "HOME") != "/home/x" {
			t.Errorf("env %q", fp.cmd.Env)
		}
	})
}

func TestStartFailureTriesTwiceWithNewPortsAndReportsOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour {
			return behaviour{listenAfter: -1, exitAfter: 10 * time.Millisecond, exitStatus: "exit status 1", output: "Unhandled exception: boom\n"}
		})
		spec := testSpec(t)
		spec.RapidFailsPerMinute = 10
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		start := time.Now()
		if o := acquireOutcome(a); o != StartFailed {
			t.Fatalf("Acquire = %v, want start-failed", o)
		}
		// An exit is noticed at once: no waiting for startupTimeLimit.
		if d := time.Since(start); d > time.Second {
			t.Errorf("failure took %v of (fake) time", d)
		}
		procs := f.spawned()
		if len(procs) != 2 {
			t.Fatalf("%d attempts, want 2", len(procs))
		}
		if procs[0].port == procs[1].port || procs[0].token() == procs[1].token() {
			t.Errorf("the second attempt reused port %d or token", procs[0].port)
		}
		st := a.Status()
		if st.State != StateIdle || !strings.Contains(st.LastStartError, ErrExited.Error()) {
			t.Errorf("status = %+v", st)
		}
		containsAll(t, "log", logs.String(), `"event":"start_failed"`, `"exit_status":"exit status 1"`,
			`Unhandled exception: boom`, `"command":"`+filepath.Join(spec.Dir, "app"))
		// A later request tries again.
		if o := acquireOutcome(a); o != StartFailed || len(f.spawned()) != 4 {
			t.Fatalf("second request: %v after %d spawns", o, len(f.spawned()))
		}
	})
}

func TestStartTimeoutIsBoundedAndKills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: -1} })
		spec := testSpec(t)
		spec.StartupTimeLimit = time.Second
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		start := time.Now()
		if o := acquireOutcome(s.Apps()[0]); o != StartFailed {
			t.Fatalf("Acquire = %v", o)
		}
		if d := time.Since(start); d < 2*time.Second || d > 2*time.Second+100*time.Millisecond {
			t.Errorf("two attempts of 1s took %v", d)
		}
		for _, p := range f.spawned() {
			if !hasSignal(p.sigs(), syscall.SIGKILL) || !p.exitedNow() {
				t.Errorf("process %d not killed after the timeout: %v", p.pid, p.sigs())
			}
		}
		if !strings.Contains(s.Apps()[0].Status().LastStartError, ErrStartTimeout.Error()) {
			t.Errorf("LastStartError = %q", s.Apps()[0].Status().LastStartError)
		}
	})
}

func TestStartupTimeLimitZeroIsOneCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: time.Millisecond} })
		spec := testSpec(t)
		spec.StartupTimeLimit = 0
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		if o := acquireOutcome(s.Apps()[0]); o != StartFailed {
			t.Fatalf("Acquire = %v, want start-failed: 0 is not infinite", o)
		}
	})
}

func TestCrashRestartsAtOnceWithNewPortAndToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		s, logs := fakeSup(t, f, Options{}, testSpec(t))
		defer stop(t, s)
		a := s.Apps()[0]
		p1 := mustAcquire(t, a)
		p1.Release()
		f.spawned()[0].exit("exit status 139")
		synctest.Wait()
		// Restarted without waiting for a request.
		if n := len(f.spawned()); n != 2 {
			t.Fatalf("%d spawns after a crash, want 2", n)
		}
		p2 := mustAcquire(t, a)
		p2.Release()
		if p2.PID() == p1.PID() || p2.Port() == p1.Port() || p2.Token() == p1.Token() {
			t.Errorf("restart kept pid/port/token: %d/%d/%s", p2.PID(), p2.Port(), p2.Token())
		}
		st := a.Status()
		if st.Crashes != 1 || st.Restarts != 1 || st.Processes[0].Restarts != 1 || st.Processes[0].LastExit != "exit status 139" {
			t.Errorf("status = %+v", st)
		}
		containsAll(t, "log", logs.String(), `"event":"crash"`, `"exit_status":"exit status 139"`, `"event":"restart"`)
	})
}

func TestRapidFailWindowBlocksThenFreesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{exitAfter: time.Second} }) // listens, crashes after 1 s
		spec := testSpec(t)
		spec.RapidFailsPerMinute = 2
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		t0 := time.Now()
		mustAcquire(t, a).Release()
		// Crash 1 and 2 are restarted at once; crash 3 exceeds the limit of 2.
		time.Sleep(3*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if n := len(f.spawned()); n != 3 {
			t.Fatalf("%d spawns, want 3 (no restart after the 3rd crash)", n)
		}
		if st := a.Status(); st.State != StateCrashLoop || st.RapidFailBlocks != 1 || st.Crashes != 3 {
			t.Fatalf("status = %+v", st)
		}
		if o := acquireOutcome(a); o != StartFailed {
			t.Fatalf("Acquire while blocked = %v", o)
		}
		if len(f.spawned()) != 3 {
			t.Fatal("a request started a process while blocked")
		}
		containsAll(t, "log", logs.String(), `"event":"rapid_fail_block"`)
		// The first crash (at ~1 s) leaves the sliding window at ~61 s; the
		// next request starts the app again: it never gives up for good.
		time.Sleep(t0.Add(61*time.Second + 10*time.Millisecond).Sub(time.Now()))
		synctest.Wait()
		if st := a.Status().State; st != StateIdle {
			t.Fatalf("state after the window freed up = %s, want idle", st)
		}
		mustAcquire(t, a).Release()
		if n := len(f.spawned()); n != 4 {
			t.Fatalf("%d spawns, want 4", n)
		}
	})
}

func TestFailedStartsCountInTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: -1, exitAfter: time.Millisecond} })
		spec := testSpec(t)
		spec.RapidFailsPerMinute = 1
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		for i := range 2 {
			if o := acquireOutcome(a); o != StartFailed {
				t.Fatalf("request %d: %v", i, o)
			}
		}
		// Two failed starts > limit 1: blocked, no more spawns.
		n := len(f.spawned())
		if o := acquireOutcome(a); o != StartFailed || len(f.spawned()) != n {
			t.Fatalf("blocked app spawned: %v, %d → %d", o, n, len(f.spawned()))
		}
		if st := a.Status(); st.State != StateCrashLoop {
			t.Errorf("state %s, want crashloop", st.State)
		}
	})
}

func TestRoundRobinSkipsRestartingSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.ProcessesPerApplication = 3
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		synctest.Wait()
		if n := len(f.spawned()); n != 3 {
			t.Fatalf("%d spawns, want 3", n)
		}
		seen := map[int]int{}
		for range 30 {
			p := mustAcquire(t, a)
			seen[p.PID()]++
			p.Release()
		}
		if len(seen) != 3 {
			t.Logf("%+v", a.Status())
			t.Fatalf("requests hit %d processes, want 3: %v", len(seen), seen)
		}
		for pid, n := range seen {
			if n != 10 {
				t.Errorf("pid %d got %d of 30 requests", pid, n)
			}
		}
		// Slot crash: its restart is slow; requests go to the other two.
		f.mu.Lock()
		f.script = func(*Cmd) behaviour { return behaviour{listenAfter: time.Second} }
		f.mu.Unlock()
		crashed := f.spawned()[1]
		crashed.exit("exit status 1")
		synctest.Wait()
		for range 10 {
			p := mustAcquire(t, a)
			if p.PID() == crashed.pid {
				t.Fatal("request routed to a crashed process")
			}
			p.Release()
		}
		st := a.Status()
		states := map[State]int{}
		for _, ps := range st.Processes {
			states[ps.State]++
		}
		if states[StateStarting] != 1 || states[StateReady] != 2 || st.State != StateReady {
			t.Errorf("status = %+v", st)
		}
	})
}

func TestGracefulStopSendsShutdownRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.VirtualPath = "/api"
		s, logs := fakeSup(t, f, Options{}, spec)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		stop(t, s)
		reqs := f.shutdownRequests()
		want := "http://" + p.Addr() + "/api/iisintegration " + p.Token()
		if len(reqs) != 1 || reqs[0] != want {
			t.Fatalf("shutdown requests %q, want %q", reqs, want)
		}
		fp := f.spawned()[0]
		if len(fp.sigs()) != 0 {
			t.Errorf("signals %v sent to a process that accepted the shutdown request", fp.sigs())
		}
		if o := acquireOutcome(a); o != Stopping {
			t.Errorf("Acquire after Shutdown = %v", o)
		}
		containsAll(t, "log", logs.String(), `"event":"stop"`, `"exit_status":"exit status 0"`)
	})
}

func TestStopEscalatesToSIGTERMThenSIGKILLAtShutdownTimeLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{ignoreShutdown: true, ignoreTerm: true} })
		spec := testSpec(t)
		spec.ShutdownTimeLimit = 3 * time.Second
		s, logs := fakeSup(t, f, Options{}, spec)
		mustAcquire(t, s.Apps()[0]).Release()
		start := time.Now()
		stop(t, s)
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("stop took %v, want exactly shutdownTimeLimit 3s", d)
		}
		sigs := f.spawned()[0].sigs()
		if len(sigs) != 2 || sigs[0] != syscall.SIGTERM || sigs[1] != syscall.SIGKILL {
			t.Errorf("signals %v, want SIGTERM then SIGKILL", sigs)
		}
		containsAll(t, "log", logs.String(), `"event":"kill"`)
	})
}

func TestShutdownTimeLimitZeroKillsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.ShutdownTimeLimit = 0
		s, _ := fakeSup(t, f, Options{}, spec)
		mustAcquire(t, s.Apps()[0]).Release()
		stop(t, s)
		if sigs := f.spawned()[0].sigs(); len(sigs) != 1 || sigs[0] != syscall.SIGKILL {
			t.Errorf("signals %v, want SIGKILL only", sigs)
		}
		if n := len(f.shutdownRequests()); n != 0 {
			t.Errorf("%d shutdown requests with shutdownTimeLimit 0", n)
		}
	})
}

func TestStopDrainsInFlightRequestsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.ShutdownTimeLimit = 10 * time.Second
		s, _ := fakeSup(t, f, Options{}, spec)
		a := s.Apps()[0]
		p := mustAcquire(t, a) // a request in flight
		done := make(chan struct{})
		go func() {
			stop(t, s)
			close(done)
		}()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(f.shutdownRequests()); n != 0 {
			t.Fatalf("shutdown request sent while a request was in flight")
		}
		if o := acquireOutcome(a); o != Stopping {
			t.Errorf("new request during shutdown got %v", o)
		}
		p.Release()
		synctest.Wait()
		if n := len(f.shutdownRequests()); n != 1 {
			t.Fatalf("%d shutdown requests after the drain", n)
		}
		<-done
	})
}

func TestDrainIsBoundedByShutdownTimeLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.ShutdownTimeLimit = 2 * time.Second
		s, _ := fakeSup(t, f, Options{}, spec)
		p := mustAcquire(t, s.Apps()[0]) // never released before the stop
		start := time.Now()
		released := make(chan struct{})
		go func() {
			time.Sleep(10 * time.Second)
			p.Release()
			close(released)
		}()
		defer func() { <-released }()
		stop(t, s)
		if n := len(f.shutdownRequests()); n != 1 {
			t.Fatalf("%d shutdown requests", n)
		}
		if d := time.Since(start); d < 2*time.Second || d > 11*time.Second {
			t.Errorf("stop took %v", d)
		}
	})
}

func TestShutdownDuringStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: time.Minute} })
		s, _ := fakeSup(t, f, Options{}, testSpec(t))
		a := s.Apps()[0]
		got := make(chan Outcome, 1)
		go func() { got <- acquireOutcome(a) }()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		stop(t, s)
		if o := <-got; o != Stopping {
			t.Errorf("waiter got %v, want stopping", o)
		}
		if n := f.alive(); n != 0 {
			t.Errorf("%d processes alive after Shutdown", n)
		}
		if !hasSignal(f.spawned()[0].sigs(), syscall.SIGKILL) {
			t.Error("the starting process was not killed")
		}
	})
}

func TestAcquireContextDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: time.Minute} })
		s, _ := fakeSup(t, f, Options{}, testSpec(t))
		defer stop(t, s)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if p, o := s.Apps()[0].Acquire(ctx); p != nil || o != Stopping {
			t.Errorf("Acquire with an expiring context = %v, %v", p, o)
		}
	})
}

func TestKillSIGKILLsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{ignoreTerm: true, ignoreShutdown: true} })
		spec := testSpec(t)
		spec.ProcessesPerApplication = 2
		s, _ := fakeSup(t, f, Options{}, spec)
		mustAcquire(t, s.Apps()[0]).Release()
		synctest.Wait()
		start := time.Now()
		s.Kill()
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Kill took %v", d)
		}
		for _, p := range f.spawned() {
			if !p.exitedNow() || !hasSignal(p.sigs(), syscall.SIGKILL) {
				t.Errorf("process %d survived Kill: %v", p.pid, p.sigs())
			}
		}
		if o := acquireOutcome(s.Apps()[0]); o != Stopping {
			t.Errorf("Acquire after Kill = %v", o)
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown after Kill: %v", err)
		}
		if n := s.liveCount(); n != 0 {
			t.Errorf("%d processes still tracked", n)
		}
	})
}

func TestShutdownContextExpiryKills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{ignoreTerm: true, ignoreShutdown: true} })
		spec := testSpec(t)
		spec.ShutdownTimeLimit = time.Minute
		s, _ := fakeSup(t, f, Options{}, spec)
		mustAcquire(t, s.Apps()[0]).Release()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want deadline exceeded", err)
		}
		if n := f.alive(); n != 0 {
			t.Errorf("%d processes alive", n)
		}
	})
}

func TestAppOfflineBeforeFirstRequestNeverStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		offline := filepath.Join(spec.Dir, "app_offline.htm")
		writeFile(t, offline, "<h1>down for maintenance</h1>")
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		for range 3 {
			if o := acquireOutcome(a); o != Offline {
				t.Fatalf("Acquire = %v, want offline", o)
			}
		}
		if string(a.OfflinePage()) != "<h1>down for maintenance</h1>" {
			t.Errorf("page %q", a.OfflinePage())
		}
		if st := a.Status(); st.State != StateOffline || !st.Offline || len(f.spawned()) != 0 {
			t.Fatalf("status %+v, %d spawns", st, len(f.spawned()))
		}
		// Removed (noticed by the watcher): the next request starts the app.
		os.Remove(offline)
		f.notify("app_offline.htm")
		synctest.Wait()
		if len(f.spawned()) != 0 {
			t.Fatal("started before a request")
		}
		mustAcquire(t, a).Release()
	})
}

func TestAppOfflineWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		writeFile(t, filepath.Join(spec.Dir, "app_offline.htm"), "v1")
		f.notify("App_Offline.htm") // names compare case-insensitively
		time.Sleep(10 * time.Millisecond)
		if o := acquireOutcome(a); o != Offline || string(a.OfflinePage()) != "v1" {
			t.Fatalf("Acquire = %v, page %q", o, a.OfflinePage())
		}
		fp := f.spawned()[0]
		if !fp.exitedNow() || len(f.shutdownRequests()) != 1 {
			t.Fatalf("the app was not stopped gracefully: exited %v, %d shutdown requests", fp.exitedNow(), len(f.shutdownRequests()))
		}
		// Changed content is served.
		writeFile(t, filepath.Join(spec.Dir, "app_offline.htm"), "v2")
		f.notify("app_offline.htm")
		synctest.Wait()
		if o := acquireOutcome(a); o != Offline || string(a.OfflinePage()) != "v2" {
			t.Fatalf("Acquire = %v, page %q", o, a.OfflinePage())
		}
		// Removed without a notification: the request path polls (200 ms).
		os.Remove(filepath.Join(spec.Dir, "app_offline.htm"))
		time.Sleep(250 * time.Millisecond)
		p := mustAcquire(t, a)
		p.Release()
		if p.PID() == fp.pid || len(f.spawned()) != 2 {
			t.Errorf("not restarted after app_offline.htm went away")
		}
		if st := a.Status(); st.Crashes != 0 {
			t.Errorf("a graceful stop counted as a crash: %+v", st)
		}
		containsAll(t, "log", logs.String(), `"event":"app_offline"`, `"event":"app_online"`)
	})
}

func TestAppOfflineDuringStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: 5 * time.Second} })
		spec := testSpec(t)
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		got := make(chan Outcome, 1)
		go func() { got <- acquireOutcome(a) }()
		time.Sleep(time.Second)
		writeFile(t, filepath.Join(spec.Dir, "app_offline.htm"), "")
		f.notify("app_offline.htm")
		if o := <-got; o != Offline {
			t.Fatalf("waiter got %v, want offline", o)
		}
		synctest.Wait()
		if n := f.alive(); n != 0 {
			t.Errorf("%d processes alive while offline", n)
		}
		time.Sleep(10 * time.Second) // the cancelled start never comes up
		if st := a.Status(); st.State != StateOffline || st.Processes[0].PID != 0 {
			t.Errorf("status %+v", st)
		}
	})
}

func TestUnreachableProcessIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		s, _ := fakeSup(t, f, Options{}, testSpec(t))
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		// Still listening: nothing happens.
		p.Unreachable()
		time.Sleep(time.Second)
		if len(f.spawned()) != 1 {
			t.Fatal("a healthy process was replaced")
		}
		f.spawned()[0].stopListening()
		p.Unreachable()
		time.Sleep(time.Second)
		if !hasSignal(f.spawned()[0].sigs(), syscall.SIGKILL) || len(f.spawned()) != 2 {
			t.Fatalf("hung process not killed and replaced: %v, %d spawns", f.spawned()[0].sigs(), len(f.spawned()))
		}
		if st := a.Status(); st.Crashes != 1 {
			t.Errorf("crashes %d", st.Crashes)
		}
	})
}

func TestPortsAndUpstreamLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		reg := &fakePorts{}
		var upMu sync.Mutex
		var ups []*fakeUpstream
		opts := Options{Ports: reg, NewUpstream: func(p *Process) Upstream {
			upMu.Lock()
			defer upMu.Unlock()
			u := &fakeUpstream{pid: p.PID()}
			ups = append(ups, u)
			return u
		}}
		s, _ := fakeSup(t, f, opts, testSpec(t))
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		if u, ok := p.Upstream().(*fakeUpstream); !ok || u.pid != p.PID() {
			t.Fatalf("Upstream = %v", p.Upstream())
		}
		if got := reg.list(); len(got) != 1 || got[0] != "+"+itoa(p.Port()) {
			t.Fatalf("port registry %v", got)
		}
		p.Release()
		f.spawned()[0].exit("exit status 2") // crash: port removed, upstream closed
		synctest.Wait()
		p2 := mustAcquire(t, a)
		p2.Release()
		stop(t, s)
		want := []string{"+" + itoa(p.Port()), "-" + itoa(p.Port()), "+" + itoa(p2.Port()), "-" + itoa(p2.Port())}
		if got := reg.list(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("port registry %v, want %v", got, want)
		}
		upMu.Lock()
		defer upMu.Unlock()
		if len(ups) != 2 || ups[0].closed.Load() != 1 || ups[1].closed.Load() != 1 {
			t.Errorf("upstreams %d, closed %v", len(ups), ups)
		}
	})
}

func TestOutputRelayedWithFields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{output: "hello from the app\r\nsecond line\n"} })
		s, logs := fakeSup(t, f, Options{}, testSpec(t))
		defer stop(t, s)
		p := mustAcquire(t, s.Apps()[0])
		p.Release()
		synctest.Wait()
		containsAll(t, "log", logs.String(),
			`{"level":"info","app":"/","pid":`+itoa(p.PID())+`,"stream":"stdout","message":"hello from the app"}`,
			`"message":"second line"`)
	})
}

func TestStdoutLogFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{output: "to the file\n"} })
		spec := testSpec(t)
		spec.StdoutLogEnabled = true
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		p := mustAcquire(t, s.Apps()[0])
		p.Release()
		synctest.Wait()
		// synctest's clock starts at 2000-01-01 00:00:00 UTC.
		name := spec.StdoutLogFile + "_20000101000000_" + itoa(p.PID()) + ".log"
		data, err := os.ReadFile(name)
		if err != nil || string(data) != "to the file\n" {
			t.Fatalf("stdout log %s: %q, %v", name, data, err)
		}
		if strings.Contains(logs.String(), "to the file") {
			t.Error("output went to the log as well as the file")
		}
	})
}

func TestStdoutLogUncreatableStillStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{output: "relayed instead\n"} })
		spec := testSpec(t)
		spec.StdoutLogEnabled = true
		writeFile(t, filepath.Join(spec.Dir, "logs"), "a file where the directory should be")
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		mustAcquire(t, s.Apps()[0]).Release()
		synctest.Wait()
		out := logs.String()
		if n := strings.Count(out, "could not create the stdout log file"); n != 1 {
			t.Errorf("%d warnings, want 1:\n%s", n, out)
		}
		containsAll(t, "log", out, `"message":"relayed instead"`)
	})
}

func TestConsoleRedirectionOffDiscardsOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{output: "should vanish\n"} })
		spec := testSpec(t)
		spec.ConsoleRedirection = false
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		mustAcquire(t, s.Apps()[0]).Release()
		if f.spawned()[0].cmd.Output {
			t.Error("output requested with enableOutOfProcessConsoleRedirection=false")
		}
	})
}

func TestDebugLogFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.DebugFile = filepath.Join(spec.Dir, "diag", "debug.log")
		spec.DebugLevel = "file,trace"
		s, _ := fakeSup(t, f, Options{}, spec)
		mustAcquire(t, s.Apps()[0]).Release()
		stop(t, s)
		data, err := os.ReadFile(spec.DebugFile)
		if err != nil {
			t.Fatal(err)
		}
		containsAll(t, "debug log", string(data), `"event":"start"`, `"event":"ready"`, `"message":"spawning"`,
			`"command":"`+filepath.Join(spec.Dir, "app")+`"`, `"message":"sent the shutdown request"`)
	})
}

func TestNoFreePort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		for p := minRandomPort; p <= maxPort; p++ {
			f.busy[p] = true
		}
		s, _ := fakeSup(t, f, Options{}, testSpec(t))
		defer stop(t, s)
		if o := acquireOutcome(s.Apps()[0]); o != StartFailed {
			t.Fatalf("Acquire = %v", o)
		}
		if st := s.Apps()[0].Status(); !strings.Contains(st.LastStartError, ErrNoFreePort.Error()) || len(f.spawned()) != 0 {
			t.Errorf("status %+v", st)
		}
	})
}

func TestMissingProcessPathFailsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.ProcessPath = "nosuchapp"
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		if o := acquireOutcome(s.Apps()[0]); o != StartFailed {
			t.Fatalf("Acquire = %v", o)
		}
		containsAll(t, "log", logs.String(), `"attempts":1`, ErrProcessNotFound.Error())
	})
}

func TestNewRejectsBadSpecs(t *testing.T) {
	a, b := testSpec(t), testSpec(t)
	if _, err := New([]*configload.AppSpec{a, b}, Options{OS: newFakeOS(nil)}); err == nil || !strings.Contains(err.Error(), "virtual path / is used by both") {
		t.Errorf("duplicate virtual path: %v", err)
	}
	if _, err := New([]*configload.AppSpec{a, nil}, Options{OS: newFakeOS(nil)}); err == nil {
		t.Error("nil spec accepted")
	}
	b.ProcessesPerApplication = 0
	b.VirtualPath = "/b"
	if _, err := New([]*configload.AppSpec{b}, Options{OS: newFakeOS(nil)}); !errors.Is(err, configload.ErrInvalid) {
		t.Errorf("invalid spec: %v", err)
	}
}

func TestStatusOrderAndNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		a, b := testSpec(t), testSpec(t)
		b.VirtualPath = "/api"
		s, _ := fakeSup(t, f, Options{}, a, b)
		defer stop(t, s)
		st := s.Status()
		if len(st) != 2 || st[0].Name != "/" || st[1].Name != "/api" || st[1].Dir != b.Dir || s.Apps()[1].Name() != "/api" {
			t.Errorf("status %+v", st)
		}
	})
}

type fakePorts struct {
	mu  sync.Mutex
	ops []string
}

func (r *fakePorts) AddPort(p uint16) error    { r.add("+" + itoa(int(p))); return nil }
func (r *fakePorts) RemovePort(p uint16) error { r.add("-" + itoa(int(p))); return nil }
func (r *fakePorts) add(s string)              { r.mu.Lock(); r.ops = append(r.ops, s); r.mu.Unlock() }
func (r *fakePorts) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops...)
}

type fakeUpstream struct {
	pid    int
	closed atomicInt
}

func (u *fakeUpstream) Close() { u.closed.Add(1) }

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUnwatchableDirectoryIsPolled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		f.watchErr = errors.New("inotify watch limit reached")
		spec := loadedApp(t, "", "")
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		writeFile(t, filepath.Join(spec.Dir, "app_offline.htm"), "x")
		time.Sleep(1500 * time.Millisecond)
		if st := a.Status(); st.State != StateOffline {
			t.Fatalf("state %s: app_offline.htm not noticed by polling", st.State)
		}
		os.Remove(filepath.Join(spec.Dir, "app_offline.htm"))
		webConfig(t, spec.Dir, `shutdownTimeLimit="7"`, "")
		os.Chtimes(spec.ConfigFile, time.Now(), time.Now().Add(time.Hour)) // a new mtime even on a coarse clock
		time.Sleep(1500 * time.Millisecond)
		if st := a.Status(); st.State != StateIdle || a.Spec().ShutdownTimeLimit != 7*time.Second {
			t.Fatalf("state %s, limit %v", st.State, a.Spec().ShutdownTimeLimit)
		}
		containsAll(t, "log", logs.String(), "inotify watch limit reached")
	})
}
