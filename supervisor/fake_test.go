package supervisor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

// behaviour scripts a fake process.
type behaviour struct {
	listenAfter    time.Duration // when it starts listening; negative: never
	exitAfter      time.Duration // when it exits by itself; 0: never
	exitStatus     string        // for exitAfter; default "exit status 3"
	ignoreTerm     bool
	ignoreShutdown bool   // answer the shutdown request with 404
	output         string // written to stdout at start
}

// fakeOS is an in-memory OS for the state-machine tests: processes follow a
// script, "listening" is a map entry, time is synctest's.
type fakeOS struct {
	mu        sync.Mutex
	script    func(c *Cmd) behaviour
	spawnErr  error
	nextPID   int
	procs     []*fakeProc
	listening map[int]*fakeProc
	busy      map[int]bool // ports PortFree reports taken
	shutdowns []string     // URLs of shutdown requests, with the token after a space
	watchers  []*fakeWatcher
	watchErr  error
	// h2cProbes and h2cShutdowns count ProbeH2C and SendShutdownH2C calls.
	h2cProbes, h2cShutdowns int
}

func newFakeOS(script func(c *Cmd) behaviour) *fakeOS {
	return &fakeOS{script: script, nextPID: 1000, listening: map[int]*fakeProc{}, busy: map[int]bool{}}
}

func (f *fakeOS) Spawn(c *Cmd) (Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spawnErr != nil {
		return nil, f.spawnErr
	}
	f.nextPID++
	port, _ := strconv.Atoi(envLookup(c.Env, envPort))
	p := &fakeProc{os: f, pid: f.nextPID, cmd: c, port: port, b: f.script(c), done: make(chan struct{})}
	if c.Output {
		p.outR, p.outW = io.Pipe()
		p.errR, p.errW = io.Pipe()
	}
	f.procs = append(f.procs, p)
	if p.b.listenAfter == 0 {
		f.listening[port] = p
	}
	go p.live()
	return p, nil
}

func (f *fakeOS) PortFree(port int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.busy[port] && f.listening[port] == nil
}

func (f *fakeOS) Probe(port int, timeout time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listening[port] != nil
}

func (f *fakeOS) ProbeH2C(port int, timeout time.Duration) error {
	f.mu.Lock()
	f.h2cProbes++
	f.mu.Unlock()
	if !f.Probe(port, timeout) {
		return errors.New("connection refused")
	}
	return nil
}

func (f *fakeOS) SendShutdownH2C(rawURL, token string, timeout time.Duration) (int, error) {
	f.mu.Lock()
	f.h2cShutdowns++
	f.mu.Unlock()
	return f.SendShutdown(rawURL, token, timeout)
}

func (f *fakeOS) SendShutdown(rawURL, token string, timeout time.Duration) (int, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	port, _ := strconv.Atoi(u.Port())
	f.mu.Lock()
	f.shutdowns = append(f.shutdowns, rawURL+" "+token)
	p := f.listening[port]
	f.mu.Unlock()
	if p == nil {
		return 0, errors.New("connection refused")
	}
	if p.b.ignoreShutdown || envLookup(p.cmd.Env, envToken) != token {
		return 404, nil
	}
	go func() {
		time.Sleep(time.Millisecond)
		p.exit("exit status 0")
	}()
	return 202, nil
}

func (f *fakeOS) Watch(dir string) (Watcher, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.watchErr != nil {
		return nil, f.watchErr
	}
	w := &fakeWatcher{dir: dir, c: make(chan string, 16)}
	f.watchers = append(f.watchers, w)
	return w, nil
}

// ReadFile and Stat read the real file system: the tests write the app's
// files (app_offline.htm, web.config) into a temporary directory.
func (f *fakeOS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

func (f *fakeOS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// notify delivers a directory event for name to every watcher.
func (f *fakeOS) notify(name string) {
	f.mu.Lock()
	ws := append([]*fakeWatcher(nil), f.watchers...)
	f.mu.Unlock()
	for _, w := range ws {
		w.c <- name
	}
}

func (f *fakeOS) spawned() []*fakeProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeProc(nil), f.procs...)
}

func (f *fakeOS) shutdownRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.shutdowns...)
}

// alive counts spawned processes that have not exited.
func (f *fakeOS) alive() int {
	n := 0
	for _, p := range f.spawned() {
		if !p.exitedNow() {
			n++
		}
	}
	return n
}

type fakeWatcher struct {
	dir string
	c   chan string
}

func (w *fakeWatcher) Events() <-chan string { return w.c }
func (w *fakeWatcher) Close() error          { return nil }

type fakeProc struct {
	os         *fakeOS
	pid        int
	cmd        *Cmd
	port       int
	b          behaviour
	outR, errR *io.PipeReader
	outW, errW *io.PipeWriter

	mu      sync.Mutex
	done    chan struct{}
	status  string
	signals []syscall.Signal
	reaped  bool
	waited  bool
}

func (p *fakeProc) live() {
	if p.b.output != "" && p.outW != nil {
		p.outW.Write([]byte(p.b.output))
	}
	var listen, exit <-chan time.Time
	if p.b.listenAfter > 0 {
		listen = time.After(p.b.listenAfter)
	}
	if p.b.exitAfter > 0 {
		exit = time.After(p.b.exitAfter)
	}
	for {
		select {
		case <-listen:
			listen = nil
			p.os.mu.Lock()
			p.os.listening[p.port] = p
			p.os.mu.Unlock()
		case <-exit:
			st := p.b.exitStatus
			if st == "" {
				st = "exit status 3"
			}
			p.exit(st)
			return
		case <-p.done:
			return
		}
	}
}

func (p *fakeProc) exit(status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return
	default:
	}
	p.status = status
	p.os.mu.Lock()
	if p.os.listening[p.port] == p {
		delete(p.os.listening, p.port)
	}
	p.os.mu.Unlock()
	if p.outW != nil {
		p.outW.Close()
		p.errW.Close()
	}
	close(p.done)
}

// stopListening makes the process hang: alive, port closed.
func (p *fakeProc) stopListening() {
	p.os.mu.Lock()
	delete(p.os.listening, p.port)
	p.os.mu.Unlock()
}

func (p *fakeProc) exitedNow() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *fakeProc) PID() int { return p.pid }

func (p *fakeProc) Stdout() io.ReadCloser {
	if p.outR == nil {
		return nil
	}
	return p.outR
}

func (p *fakeProc) Stderr() io.ReadCloser {
	if p.errR == nil {
		return nil
	}
	return p.errR
}

func (p *fakeProc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	if p.reaped {
		p.mu.Unlock()
		return os.ErrProcessDone
	}
	p.signals = append(p.signals, sig)
	p.mu.Unlock()
	switch {
	case sig == syscall.SIGKILL:
		p.exit("signal: killed")
	case sig == syscall.SIGTERM && !p.b.ignoreTerm:
		p.exit("signal: terminated")
	}
	return nil
}

func (p *fakeProc) Wait() string {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waited {
		panic("Wait called twice")
	}
	p.waited, p.reaped = true, true
	return p.status
}

func (p *fakeProc) sigs() []syscall.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]syscall.Signal(nil), p.signals...)
}

func (p *fakeProc) token() string { return envLookup(p.cmd.Env, envToken) }

func itoa(i int) string { return strconv.Itoa(i) }

type atomicInt = atomic.Int32

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testSpec returns a valid spec for an app in a new directory holding an
// executable "app" (what ProcessPath names).
func testSpec(t testing.TB) *configload.AppSpec {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &configload.AppSpec{
		Dir:                     dir,
		ConfigFile:              filepath.Join(dir, "web.config"),
		VirtualPath:             "/",
		ProcessPath:             "app",
		StartupTimeLimit:        10 * time.Second,
		ShutdownTimeLimit:       5 * time.Second,
		RapidFailsPerMinute:     3,
		RequestTimeout:          2 * time.Minute,
		StdoutLogFile:           filepath.Join(dir, "logs", "stdout"),
		ProcessesPerApplication: 1,
		ConsoleRedirection:      true,
		MaxAllowedContentLength: 30000000,
		PingInterval:            30 * time.Second,
		PingResponseTime:        90 * time.Second,
		QueueLength:             1000,
	}
}

// fakeSup starts a Supervisor over f with a log captured in the returned
// buffer. Call stop (deferred in the bubble) to shut it down.
func fakeSup(t *testing.T, f *fakeOS, opts Options, specs ...*configload.AppSpec) (*Supervisor, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	opts.OS = f
	opts.Logger = zerolog.New(logs)
	opts.Environ = append(opts.Environ, "PATH=/usr/bin:/bin")
	s, err := New(specs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, logs
}

func stop(t *testing.T, s *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func listening() behaviour { return behaviour{} }

func mustAcquire(t *testing.T, a *App) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, o := a.Acquire(ctx)
	if o != Ready {
		t.Fatalf("Acquire: %v, want ready", o)
	}
	return p
}

func acquireOutcome(a *App) Outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, o := a.Acquire(ctx)
	if p != nil {
		p.Release()
	}
	return o
}

func hasSignal(sigs []syscall.Signal, s syscall.Signal) bool {
	for _, x := range sigs {
		if x == s {
			return true
		}
	}
	return false
}

func containsAll(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}
