package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// webConfig writes dir/web.config with an aspNetCore element carrying attrs
// and the given handler settings / environment variables (raw XML).
func webConfig(t *testing.T, dir, attrs, inner string) {
	t.Helper()
	x := fmt.Sprintf(`<configuration><system.webServer><aspNetCore processPath="./app" %s>%s</aspNetCore></system.webServer></configuration>`, attrs, inner)
	writeFile(t, filepath.Join(dir, "web.config"), x)
}

// loadedApp writes a web.config and loads it the way cmd/loopgate will.
func loadedApp(t *testing.T, attrs, inner string) *configload.AppSpec {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "app"), "#!/bin/sh\n")
	os.Chmod(filepath.Join(dir, "app"), 0o755)
	webConfig(t, dir, attrs, inner)
	spec, err := configload.Load(dir, configload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestReloadUnchangedLeavesAppAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := loadedApp(t, `shutdownTimeLimit="2"`, "")
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		// Same meaning, different bytes (a comment): not a change.
		writeFile(t, spec.ConfigFile, "<!-- touched -->\n"+mustRead(t, spec.ConfigFile))
		if errs := s.Reload(); len(errs) != 0 {
			t.Fatal(errs)
		}
		time.Sleep(time.Second)
		if len(f.spawned()) != 1 || a.Spec() != spec {
			t.Fatalf("unchanged config touched the app: %d spawns", len(f.spawned()))
		}
		if st := a.Status(); st.Recycles != 0 || st.ConfigReloadsOK != 1 {
			t.Errorf("status %+v", st)
		}
	})
}

func TestReloadInvalidKeepsRunningSpec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := loadedApp(t, "", "")
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		webConfig(t, spec.Dir, `startupTimeLimit="4000"`, "")
		errs := s.Reload()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), `startupTimeLimit="4000"`) {
			t.Fatalf("Reload errors %v", errs)
		}
		st := a.Status()
		if !strings.Contains(st.ConfigError, "out of range") || st.ConfigReloadsFailed != 1 || a.Spec() != spec {
			t.Errorf("status %+v", st)
		}
		if p2 := mustAcquire(t, a); p2 != p {
			t.Error("an invalid web.config replaced the running process")
		} else {
			p2.Release()
		}
		containsAll(t, "log", logs.String(), `"event":"config_error"`)
		// Fixed again (same as the running spec): the error clears, nothing restarts.
		webConfig(t, spec.Dir, "", "")
		if errs := s.Reload(); len(errs) != 0 {
			t.Fatal(errs)
		}
		if st := a.Status(); st.ConfigError != "" || len(f.spawned()) != 1 {
			t.Errorf("status %+v after the fix", st)
		}
		containsAll(t, "log", logs.String(), `"event":"config_ok","message":"web.config is good again, and the same as the configuration running"`)
	})
}

// TestReloadMissingWebConfigKeepsServing: a deleted web.config (or one in
// the middle of being replaced by a deployment) does not take the app down;
// status and the log say so, and its return is logged like a fix.
func TestReloadMissingWebConfigKeepsServing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := loadedApp(t, "", "")
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		saved := mustRead(t, spec.ConfigFile)
		if err := os.Remove(spec.ConfigFile); err != nil {
			t.Fatal(err)
		}
		if errs := s.Reload(); len(errs) != 1 {
			t.Fatalf("Reload errors %v", errs)
		}
		want := spec.ConfigFile + " is missing; the app keeps running with its last configuration (app_offline.htm takes it offline; restart loopgate without this APP to remove it)"
		if st := a.Status(); st.ConfigError != want || st.ConfigReloadsFailed != 1 || a.Spec() != spec {
			t.Errorf("status %+v", st)
		}
		if p2 := mustAcquire(t, a); p2 != p {
			t.Error("a missing web.config replaced the running process")
		} else {
			p2.Release()
		}
		containsAll(t, "log", logs.String(), `"event":"config_missing","message":"`+want+`"`)
		// Back with a change: logged as good again, and applied.
		writeFile(t, spec.ConfigFile, strings.Replace(saved, "<aspNetCore ", `<aspNetCore shutdownTimeLimit="3" `, 1))
		if errs := s.Reload(); len(errs) != 0 {
			t.Fatal(errs)
		}
		if st := a.Status(); st.ConfigError != "" || st.Recycles != 1 {
			t.Errorf("status %+v after web.config came back", st)
		}
		containsAll(t, "log", logs.String(), `"event":"config_ok","message":"web.config is good again; applying it"`)
	})
}

func TestRecycleHasZeroDowntime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: 2 * time.Second} })
		spec := loadedApp(t, `shutdownTimeLimit="5"`, "")
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		old := mustAcquire(t, a)
		old.Release()

		// Traffic during the recycle: every request must be served.
		var bad atomic.Int32
		var served sync.Map
		stopLoad := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				p, o := a.Acquire(context.Background())
				if o != Ready {
					bad.Add(1)
				} else {
					served.Store(p.PID(), true)
					time.Sleep(10 * time.Millisecond)
					p.Release()
				}
			}
		})
		webConfig(t, spec.Dir, `shutdownTimeLimit="5"`, `<environmentVariables><environmentVariable name="V" value="2"/></environmentVariables>`)
		if errs := s.Reload(); len(errs) != 0 {
			t.Fatal(errs)
		}
		time.Sleep(time.Second)
		// The new process is not ready yet: the old one still serves.
		if old.hasExited() || len(f.spawned()) != 2 {
			t.Fatalf("old exited %v, %d spawns", old.hasExited(), len(f.spawned()))
		}
		time.Sleep(3 * time.Second)
		close(stopLoad)
		wg.Wait()
		if n := bad.Load(); n != 0 {
			t.Errorf("%d requests not served during the recycle", n)
		}
		p := mustAcquire(t, a)
		p.Release()
		fp := f.spawned()[1]
		if p.PID() != fp.pid || envLookup(fp.cmd.Env, "V") != "2" {
			t.Errorf("after the recycle requests go to %d, want the new process %d with V=2", p.PID(), fp.pid)
		}
		if _, ok := served.Load(fp.pid); !ok {
			t.Error("the new process never served during the load")
		}
		if !old.hasExited() || len(f.shutdownRequests()) != 1 {
			t.Errorf("old process not stopped gracefully: exited %v, shutdown requests %v", old.hasExited(), f.shutdownRequests())
		}
		if st := a.Status(); st.Recycles != 1 || st.Crashes != 0 || a.Spec().Environment[0].Value != "2" {
			t.Errorf("status %+v", st)
		}
		containsAll(t, "log", logs.String(), `"event":"recycle"`)
	})
}

func TestRecycleFailureKeepsOldProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(c *Cmd) behaviour {
			if envLookup(c.Env, "BROKEN") == "1" {
				return behaviour{listenAfter: -1, exitAfter: time.Millisecond}
			}
			return listening()
		})
		spec := loadedApp(t, "", "")
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		old := mustAcquire(t, a)
		old.Release()
		webConfig(t, spec.Dir, "", `<environmentVariables><environmentVariable name="BROKEN" value="1"/></environmentVariables>`)
		s.Reload()
		time.Sleep(time.Second)
		if p := mustAcquire(t, a); p != old {
			t.Errorf("requests moved to %d after the new process failed", p.PID())
		} else {
			p.Release()
		}
		if old.hasExited() || a.Status().LastStartError == "" {
			t.Errorf("old exited %v; status %+v", old.hasExited(), a.Status())
		}
	})
}

func TestCrashDuringRecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return behaviour{listenAfter: 2 * time.Second} })
		spec := loadedApp(t, "", "")
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		webConfig(t, spec.Dir, `startupTimeLimit="30"`, "")
		s.Reload()
		time.Sleep(500 * time.Millisecond)
		f.spawned()[0].exit("exit status 134") // the old process dies mid-recycle
		synctest.Wait()
		// Requests wait for the recycle's new process; no extra start.
		p := mustAcquire(t, a)
		p.Release()
		if len(f.spawned()) != 2 || p.PID() != f.spawned()[1].pid {
			t.Fatalf("%d spawns; served by %d", len(f.spawned()), p.PID())
		}
		if st := a.Status(); st.Crashes != 1 || st.Restarts != 0 || st.Processes[0].LastExit != "exit status 134" {
			t.Errorf("status %+v", st)
		}
	})
}

func TestWebConfigChangeIsWatchedAndDebounced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := loadedApp(t, "", "")
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		webConfig(t, spec.Dir, `shutdownTimeLimit="3"`, "")
		for range 5 { // an editor's burst of events
			f.notify("web.config")
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Second)
		if st := a.Status(); st.Recycles != 1 || st.ConfigReloadsOK != 1 || a.Spec().ShutdownTimeLimit != 3*time.Second {
			t.Fatalf("status %+v", st)
		}
		if len(f.spawned()) != 2 {
			t.Errorf("%d spawns after one change", len(f.spawned()))
		}
	})
}

func TestDisallowRotationOnConfigChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		settings := `<handlerSettings><handlerSetting name="disallowRotationOnConfigChange" value="true"/></handlerSettings>`
		spec := loadedApp(t, "", settings)
		s, logs := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		webConfig(t, spec.Dir, `shutdownTimeLimit="3"`, settings)
		s.Reload()
		time.Sleep(time.Second)
		if len(f.spawned()) != 1 || p.hasExited() {
			t.Fatal("recycled despite disallowRotationOnConfigChange")
		}
		if a.Spec().ShutdownTimeLimit != 3*time.Second || a.Status().Recycles != 0 {
			t.Errorf("the change was not recorded: %v", a.Spec().ShutdownTimeLimit)
		}
		containsAll(t, "log", logs.String(), "disallowRotationOnConfigChange keeps the running processes")
	})
}

func TestRecycleWithExplicitPortStopsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		env := `<environmentVariables><environmentVariable name="ASPNETCORE_PORT" value="%s"/></environmentVariables>`
		spec := loadedApp(t, `shutdownTimeLimit="2"`, fmt.Sprintf(env, "30001"))
		reg := &fakePorts{}
		s, _ := fakeSup(t, f, Options{Ports: reg}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		old := mustAcquire(t, a)
		old.Release()
		webConfig(t, spec.Dir, `shutdownTimeLimit="3"`, fmt.Sprintf(env, "30001"))
		s.Reload()
		p := mustAcquire(t, a)
		p.Release()
		if p == old || p.Port() != 30001 || !old.hasExited() {
			t.Fatalf("new %d on %d; old exited %v", p.PID(), p.Port(), old.hasExited())
		}
		// The port stays registered for the new process.
		if got := strings.Join(reg.list(), " "); got != "+30001 -30001 +30001" {
			t.Errorf("port registry %s", got)
		}
	})
}

func TestRecycleChangesProcessCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeOS(func(*Cmd) behaviour { return listening() })
		spec := loadedApp(t, `processesPerApplication="3"`, "")
		s, _ := fakeSup(t, f, Options{}, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		time.Sleep(10 * time.Millisecond)
		webConfig(t, spec.Dir, `processesPerApplication="1"`, "")
		s.Reload()
		time.Sleep(time.Second)
		if st := a.Status(); len(st.Processes) != 1 || st.Processes[0].State != StateReady {
			t.Fatalf("status %+v", st)
		}
		if n := f.alive(); n != 1 {
			t.Errorf("%d processes alive, want 1", n)
		}
	})
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
