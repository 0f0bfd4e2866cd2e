package supervisor

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

// poolOS is fakeOS with the optional memory and ping seams: memory per
// PID as the test sets it, and pings answered 200 unless the process is
// marked hung (then no answer within the timeout).
type poolOS struct {
	*fakeOS
	pmu    sync.Mutex
	mem    map[int]int64
	hung   map[int]bool
	pings  map[int]int // answered pings by PID
	tokens []string    // the token of each ping
	urls   []string
}

func newPoolOS(script func(c *Cmd) behaviour) *poolOS {
	return &poolOS{fakeOS: newFakeOS(script), mem: map[int]int64{}, hung: map[int]bool{}, pings: map[int]int{}}
}

func (o *poolOS) Memory(p Proc) (int64, bool) {
	o.pmu.Lock()
	defer o.pmu.Unlock()
	n, ok := o.mem[p.PID()]
	return n, ok
}

func (o *poolOS) Ping(url, token string, h2c bool, timeout time.Duration) (int, error) {
	port := 0
	if i := strings.LastIndex(url[len("http://"):], ":"); i >= 0 {
		rest := url[len("http://")+i+1:]
		for _, c := range rest {
			if c < '0' || c > '9' {
				break
			}
			port = port*10 + int(c-'0')
		}
	}
	o.fakeOS.mu.Lock()
	p := o.fakeOS.listening[port]
	o.fakeOS.mu.Unlock()
	o.pmu.Lock()
	o.tokens = append(o.tokens, token)
	o.urls = append(o.urls, url)
	hung := p != nil && o.hung[p.pid]
	if p != nil && !hung {
		o.pings[p.pid]++
	}
	o.pmu.Unlock()
	switch {
	case p == nil:
		return 0, errors.New("connection refused")
	case hung:
		time.Sleep(timeout)
		return 0, errors.New("timeout")
	}
	return 200, nil
}

func (o *poolOS) set(m map[int]int64, k int, v int64) {
	o.pmu.Lock()
	m[k] = v
	o.pmu.Unlock()
}

func (o *poolOS) setHung(pid int) {
	o.pmu.Lock()
	o.hung[pid] = true
	o.pmu.Unlock()
}

func poolSup(t *testing.T, o *poolOS, spec *configload.AppSpec) (*Supervisor, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := New([]*configload.AppSpec{spec}, Options{OS: o, Logger: zerolog.New(logs), Environ: []string{"PATH=/usr/bin:/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

// readyPID is the PID of slot 0's ready process, 0 if none.
func readyPID(a *App) int {
	st := a.Status()
	if st.Processes[0].State != StateReady {
		return 0
	}
	return st.Processes[0].PID
}

func TestRecycleAfterRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.PeriodicRestartRequests = 5
		s, logs := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		first := 0
		for i := range 5 {
			p := mustAcquire(t, a)
			if i == 0 {
				first = p.PID()
			}
			if p.PID() != first {
				t.Fatalf("request %d went to %d before the 5th was served", i+1, p.PID())
			}
			p.Release()
		}
		synctest.Wait()
		time.Sleep(100 * time.Millisecond) // the old one's graceful stop
		second := readyPID(a)
		if second == 0 || second == first {
			t.Fatalf("after 5 requests the ready process is %d (first %d)", second, first)
		}
		if p := f0(o, first); !p.exitedNow() {
			t.Error("the recycled process is still running")
		}
		st := a.Status()
		if st.Recycles != 1 || st.RecyclesByReason[RecycleRequests] != 1 || st.RecyclesByReason[RecycleConfig] != 0 || len(st.RecyclesByReason) != len(RecycleReasons) {
			t.Errorf("recycles %d by reason %v", st.Recycles, st.RecyclesByReason)
		}
		containsAll(t, "log", logs.String(), `"event":"recycle"`, `"reason":"requests"`, `"reason":"requests","exit_status"`)
		// The new process is recycled after its own 5 requests, not at once.
		for range 4 {
			mustAcquire(t, a).Release()
		}
		synctest.Wait()
		if readyPID(a) != second {
			t.Fatal("recycled before its 5th request")
		}
		mustAcquire(t, a).Release()
		synctest.Wait()
		if pid := readyPID(a); pid == second || pid == 0 {
			t.Fatalf("not recycled after its 5th request: %d", pid)
		}
	})
}

// f0 is the fake process with pid.
func f0(o *poolOS, pid int) *fakeProc {
	for _, p := range o.spawned() {
		if p.pid == pid {
			return p
		}
	}
	return nil
}

func TestRecycleAfterUptimeIsOverlapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return behaviour{listenAfter: 2 * time.Second} })
		spec := testSpec(t)
		spec.PeriodicRestartTime = 30 * time.Second
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		first := p.PID()
		started := time.Now()
		spawned := a.Status().Processes[0].Started
		// Requests keep being served while the new process starts: every
		// one gets a process, never a failure.
		for time.Since(started) < 40*time.Second {
			q := mustAcquire(t, a)
			q.Release()
			time.Sleep(100 * time.Millisecond)
		}
		second := readyPID(a)
		if second == first || second == 0 {
			t.Fatalf("no recycle after periodicRestartTime: %d", second)
		}
		// Started 30 s after the first one was (+ at most a tick).
		if st := a.Status().Processes[0].Started; st.Sub(spawned) < 30*time.Second || st.Sub(spawned) > 30*time.Second+maxPoolTick {
			t.Errorf("the new process started %v after the first", st.Sub(spawned))
		}
		if n := a.Status().RecyclesByReason[RecycleTime]; n != 1 {
			t.Errorf("time recycles %d", n)
		}
		if sigs := f0(o, first).sigs(); hasSignal(sigs, syscall.SIGKILL) {
			t.Errorf("the old process was killed (%v), not stopped gracefully", sigs)
		}
	})
}

func TestRecycleOnMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.PeriodicRestartPrivateMemory = 1024 // KB
		s, logs := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		o.set(o.mem, p.PID(), 1024*1024) // at the limit: not over it
		time.Sleep(10 * time.Second)
		if readyPID(a) != p.PID() {
			t.Fatal("recycled at, not over, the limit")
		}
		o.set(o.mem, p.PID(), 1024*1024+1)
		time.Sleep(memoryCheckEvery + maxPoolTick)
		synctest.Wait()
		if pid := readyPID(a); pid == p.PID() || pid == 0 {
			t.Fatalf("not recycled within %v of going over the limit", memoryCheckEvery+maxPoolTick)
		}
		if n := a.Status().RecyclesByReason[RecycleMemory]; n != 1 {
			t.Errorf("memory recycles %d", n)
		}
		containsAll(t, "log", logs.String(), `"reason":"memory"`, `"memory_bytes":1048577`)
	})
}

func TestRecycleOnSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.ProcessesPerApplication = 2
		now := time.Now()
		midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
		at := now.Add(90 * time.Second).Sub(midnight).Truncate(time.Minute) // the next whole minute but one
		spec.PeriodicRestartSchedule = []time.Duration{at % (24 * time.Hour)}
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		mustAcquire(t, a).Release()
		synctest.Wait()
		before := len(o.spawned())
		if before != 2 {
			t.Fatalf("%d processes", before)
		}
		due := midnight.Add(at)
		time.Sleep(time.Until(due) - time.Second)
		if len(o.spawned()) != before {
			t.Fatal("recycled before the scheduled time")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(o.spawned()); n != 4 {
			t.Fatalf("%d processes after the scheduled time, want both slots recycled", n)
		}
		if n := a.Status().RecyclesByReason[RecycleSchedule]; n != 2 {
			t.Errorf("schedule recycles %d, want 2 (one per process)", n)
		}
		// Next day, same time.
		time.Sleep(24*time.Hour - 2*time.Second)
		synctest.Wait()
		if n := len(o.spawned()); n != 4 {
			t.Fatalf("%d processes a second before the next day's time", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(o.spawned()); n != 6 {
			t.Fatalf("%d processes after the next day's time", n)
		}
	})
}

func TestNextScheduled(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	sched := []time.Duration{3 * time.Hour, 15*time.Hour + 30*time.Minute}
	for _, c := range []struct{ now, want string }{
		{"2026-12-07 01:00:00", "2026-12-07 03:00:00"},
		{"2026-12-07 03:00:00", "2026-12-07 15:30:00"},
		{"2026-12-07 16:00:00", "2026-12-08 03:00:00"},
		{"2026-12-31 23:59:59", "2027-01-01 03:00:00"},
	} {
		now, _ := time.ParseInLocation(time.DateTime, c.now, loc)
		if got := nextScheduled(now, sched).Format(time.DateTime); got != c.want {
			t.Errorf("after %s: %s, want %s", c.now, got, c.want)
		}
	}
}

func TestIdleTimeoutStopsAndNextRequestStarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.IdleTimeout = 10 * time.Second
		s, logs := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		// Requests every 5 s keep it running.
		for range 6 {
			mustAcquire(t, a).Release()
			time.Sleep(5 * time.Second)
		}
		if len(o.spawned()) != 1 || readyPID(a) == 0 {
			t.Fatalf("stopped while busy: %d spawned, state %s", len(o.spawned()), a.Status().State)
		}
		// A request in flight for longer than idleTimeout keeps it running.
		p := mustAcquire(t, a)
		time.Sleep(30 * time.Second)
		if readyPID(a) == 0 {
			t.Fatal("stopped with a request in flight")
		}
		p.Release()
		time.Sleep(10*time.Second + 3*time.Second) // idleTimeout + a tick or two
		synctest.Wait()
		st := a.Status()
		if st.State != StateIdle || st.Processes[0].PID != 0 || o.alive() != 0 {
			t.Fatalf("not stopped after idleTimeout: %+v (%d alive)", st, o.alive())
		}
		if st.Crashes != 0 || st.Recycles != 0 {
			t.Errorf("an idle stop counted as a crash or recycle: %+v", st)
		}
		containsAll(t, "log", logs.String(), `"event":"idle_stop"`, `"reason":"idle"`)
		// The next request starts it again.
		if q := mustAcquire(t, a); q.PID() == p.PID() {
			t.Fatal("the next request got the stopped process")
		} else {
			q.Release()
		}
		if n := len(o.spawned()); n != 2 {
			t.Errorf("%d spawned", n)
		}
	})
}

func TestAlwaysRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return behaviour{listenAfter: time.Second} })
		spec := testSpec(t)
		spec.StartMode = configload.AlwaysRunning
		spec.ProcessesPerApplication = 2
		spec.IdleTimeout = time.Second // not applied with AlwaysRunning
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		synctest.Wait()
		if n := len(o.spawned()); n != 2 {
			t.Fatalf("%d processes spawned before any request, want 2", n)
		}
		if nr := a.Status().NotReady; !strings.Contains(nr, "AlwaysRunning") {
			t.Errorf("NotReady while starting = %q", nr)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if st := a.Status(); st.State != StateReady || st.NotReady != "" {
			t.Fatalf("after the start: %s, NotReady %q", st.State, st.NotReady)
		}
		time.Sleep(time.Minute) // no request: idleTimeout does not stop it
		if readyPID(a) == 0 || len(o.spawned()) != 2 {
			t.Fatal("an AlwaysRunning app was stopped or restarted while idle")
		}
		// app_offline.htm stops it and it stays stopped; its removal starts it.
		writeFile(t, a.offlinePath, "down")
		o.notify("app_offline.htm")
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if o.alive() != 0 || a.Status().NotReady != "" {
			t.Fatalf("offline: %d alive, NotReady %q", o.alive(), a.Status().NotReady)
		}
		os.Remove(a.offlinePath)
		o.notify("app_offline.htm")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if o.alive() != 2 || readyPID(a) == 0 {
			t.Fatalf("after app_offline.htm went: %d alive", o.alive())
		}
	})
}

func TestAlwaysRunningKeepsTryingWithinTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return behaviour{listenAfter: -1, exitAfter: 10 * time.Millisecond} })
		spec := testSpec(t)
		spec.StartMode = configload.AlwaysRunning
		spec.RapidFailsPerMinute = 3
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		time.Sleep(10 * time.Second)
		synctest.Wait()
		st := a.Status()
		// Each failed start (two attempts) counts once; past 3 the window blocks.
		if n := len(o.spawned()); n != 8 || st.State != StateCrashLoop || !strings.Contains(st.NotReady, "rapidFailsPerMinute") {
			t.Fatalf("%d spawned, %s, NotReady %q", n, st.State, st.NotReady)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(o.spawned()); n <= 8 {
			t.Fatalf("no new start once the window freed up (%d spawned)", n)
		}
	})
}

func TestPingReplacesHungProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.VirtualPath = "/api"
		spec.PingingEnabled, spec.PingPath = true, "/healthz"
		spec.PingInterval, spec.PingResponseTime = 2*time.Second, 5*time.Second
		s, logs := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		time.Sleep(time.Minute)
		if readyPID(a) != p.PID() {
			t.Fatal("a healthy process was replaced")
		}
		o.pmu.Lock()
		answered, url, token := o.pings[p.PID()], o.urls[0], o.tokens[0]
		o.pmu.Unlock()
		if answered < 25 || answered > 31 {
			t.Errorf("%d pings in a minute at a 2 s interval", answered)
		}
		if url != "http://"+p.Addr()+"/api/healthz" || token != p.Token() {
			t.Errorf("ping %s with token %q", url, token)
		}
		hungAt := time.Now()
		o.setHung(p.PID())
		for readyPID(a) == p.PID() && time.Since(hungAt) < time.Minute {
			time.Sleep(100 * time.Millisecond)
		}
		// The replacement comes pingResponseTime after the first unanswered
		// ping, which is at most pingInterval after the hang, as in IIS.
		if d := time.Since(hungAt); d < 5*time.Second || d > (2+5)*time.Second+200*time.Millisecond {
			t.Errorf("replaced %v after it hung, want pingResponseTime (5 s) to that plus pingInterval (2 s)", d)
		}
		synctest.Wait()
		old := f0(o, p.PID())
		if !old.exitedNow() || !hasSignal(old.sigs(), syscall.SIGKILL) || hasSignal(old.sigs(), syscall.SIGTERM) {
			t.Errorf("the hung process: exited %v, signals %v (want SIGKILL at once)", old.exitedNow(), old.sigs())
		}
		if st := a.Status(); st.RecyclesByReason[RecyclePing] != 1 || st.Crashes != 0 {
			t.Errorf("status %+v", st)
		}
		containsAll(t, "log", logs.String(), `"reason":"ping"`, `"unanswered_since"`)
		// The new one is pinged too.
		time.Sleep(10 * time.Second)
		o.pmu.Lock()
		n := o.pings[readyPID(a)]
		o.pmu.Unlock()
		if n == 0 {
			t.Error("the replacement is not pinged")
		}
	})
}

// A recycle whose new process fails to start keeps the old one, and the
// same reason does not try again for recycleRetryAfter.
func TestFailedRecycleKeepsOldAndHoldsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		o := newPoolOS(func(*Cmd) behaviour {
			n++
			if n == 1 {
				return listening()
			}
			return behaviour{listenAfter: -1, exitAfter: 10 * time.Millisecond}
		})
		spec := testSpec(t)
		spec.PeriodicRestartTime = 10 * time.Second
		spec.RapidFailsPerMinute = 10
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if readyPID(a) != p.PID() {
			t.Fatal("the old process did not keep serving")
		}
		if got := len(o.spawned()); got != 3 { // the first, then one failed start of two attempts
			t.Errorf("%d spawned in 30 s, want 3 (no retry before %v)", got, recycleRetryAfter)
		}
		time.Sleep(recycleRetryAfter)
		synctest.Wait()
		if got := len(o.spawned()); got != 5 {
			t.Errorf("%d spawned after %v, want one more failed start (5)", got, recycleRetryAfter)
		}
	})
}

func TestPoolRecycleWithExplicitPortStopsFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return listening() })
		spec := testSpec(t)
		spec.Environment = []configload.EnvVar{{Name: "ASPNETCORE_PORT", Value: "20001"}}
		spec.PeriodicRestartRequests = 1
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		synctest.Wait()
		q := mustAcquire(t, a)
		defer q.Release()
		if q.PID() == p.PID() || q.Port() != 20001 || !f0(o, p.PID()).exitedNow() {
			t.Fatalf("new %d on %d, old exited %v", q.PID(), q.Port(), f0(o, p.PID()).exitedNow())
		}
	})
}

// The real ping: any answer counts, a redirect is not followed (the token
// would go elsewhere), no answer within the timeout is an error.
func TestRealPing(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	block := make(chan struct{})
	defer close(block)
	var token, agent atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token.Store(r.Header.Get("MS-ASPNETCORE-TOKEN"))
		agent.Store(r.Header.Get("User-Agent"))
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/hung":
			select {
			case <-block:
			case <-r.Context().Done():
			}
		case "/broken":
			w.WriteHeader(503)
		}
	}))
	defer app.Close()
	for path, want := range map[string]int{"/ok": 200, "/moved": 302, "/broken": 503} {
		code, err := realOS{}.Ping(app.URL+path, "tok", false, 5*time.Second)
		if err != nil || code != want {
			t.Errorf("%s: %d %v, want %d", path, code, err, want)
		}
	}
	if token.Load() != "tok" || agent.Load() != "loopgate-ping" {
		t.Errorf("token %q, user agent %q", token.Load(), agent.Load())
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed (%d requests elsewhere)", n)
	}
	start := time.Now()
	if _, err := (realOS{}).Ping(app.URL+"/hung", "tok", false, 300*time.Millisecond); err == nil {
		t.Error("a ping nobody answers succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("an unanswered ping took %v with a 300 ms timeout", d)
	}
	if code, err := (realOS{}).SendShutdown(app.URL+"/moved", "tok", 5*time.Second); code != 302 || err != nil || elsewhere.Load() != 0 {
		t.Errorf("shutdown request to a redirect: %d %v, %d requests elsewhere", code, err, elsewhere.Load())
	}
}

// With an explicit ASPNETCORE_PORT, a request that comes while the idle
// stop is still stopping the process (it ignores the shutdown request and
// SIGTERM, so it is killed at shutdownTimeLimit) starts the new one only
// once the old one has exited: both cannot listen on the port.
func TestIdleStopWithExplicitPortWaitsForTheOldProcess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newPoolOS(func(*Cmd) behaviour { return behaviour{ignoreShutdown: true, ignoreTerm: true} })
		spec := testSpec(t)
		spec.Environment = []configload.EnvVar{{Name: "ASPNETCORE_PORT", Value: "20002"}}
		spec.IdleTimeout = 10 * time.Second
		spec.ShutdownTimeLimit = 5 * time.Second
		s, _ := poolSup(t, o, spec)
		defer stop(t, s)
		a := s.Apps()[0]
		p := mustAcquire(t, a)
		p.Release()
		for a.Status().State != StateIdle {
			time.Sleep(100 * time.Millisecond)
		}
		old := f0(o, p.PID())
		if old.exitedNow() {
			t.Fatal("the old process is already gone: the test tests nothing")
		}
		q := mustAcquire(t, a)
		defer q.Release()
		if !old.exitedNow() {
			t.Fatal("a new process is ready while the old one still holds the port")
		}
		if !hasSignal(old.sigs(), syscall.SIGKILL) {
			t.Errorf("the old process was not killed at shutdownTimeLimit: %v", old.sigs())
		}
	})
}
