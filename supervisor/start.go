package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
)

const (
	startAttempts   = 2 // the reference's dwRetryCount
	probeTimeout    = 250 * time.Millisecond
	minProbeBackoff = time.Millisecond
	maxProbeBackoff = 2 * time.Millisecond
	// outputGrace is how long a failure report waits for the dead process's
	// last output to arrive.
	outputGrace = 500 * time.Millisecond
)

// startFailure is what a failed start reports: enough for the log line the
// reference writes (command line, exit status, first 30 KB of output).
type startFailure struct {
	err        error
	cmdline    string
	exitStatus string
	output     []byte // first outputCaptureLimit bytes over all attempts
	attempts   int
}

// runStart is a start task: up to two attempts, each with a new port and
// token, each bounded by startupTimeLimit. It reports exactly one evStarted.
func (a *App) runStart(ctx context.Context, t *startTask, slotIdx int) {
	ev := event{kind: evStarted, slot: slotIdx, id: t.id}
	f := &startFailure{}
	warned := false // about an uncreatable stdout log: once per start
	if t.after != nil && !waitFor(ctx, t.after, 2*t.spec.ShutdownTimeLimit+killWait) {
		f.err = ctx.Err()
		ev.fail = f
		a.send(ev)
		return
	}
	for attempt := 1; attempt <= startAttempts; attempt++ {
		f.attempts = attempt
		p, err := a.launch(t.spec, slotIdx, &warned)
		if err == nil {
			err = a.waitReady(ctx, p, t.spec.StartupTimeLimit)
			if err == nil {
				ev.p = p
				a.send(ev)
				return
			}
			p.proc.Signal(syscall.SIGKILL)
			waitExit(p)
			f.cmdline, f.exitStatus = p.cmdline, p.status()
			if out := p.out.captured(outputGrace); len(f.output) < outputCaptureLimit {
				f.output = append(f.output, out[:min(len(out), outputCaptureLimit-len(f.output))]...)
			}
		}
		f.err = err
		if ctx.Err() != nil {
			break
		}
		var crit errCritical
		if errors.As(err, &crit) {
			break
		}
		if attempt < startAttempts {
			a.logEvent(zerolog.WarnLevel, "start_failed", "start attempt failed; retrying with a new port", func(e *zerolog.Event) {
				e.Int("slot", slotIdx).Int("attempt", attempt).Str("exit_status", f.exitStatus).Err(err)
			})
		}
	}
	ev.fail = f
	a.send(ev)
}

// waitFor waits up to limit for p to exit; false if ctx ended first.
func waitFor(ctx context.Context, p *Process, limit time.Duration) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// waitExit waits, bounded, for a killed process to be reaped.
func waitExit(p *Process) {
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
}

// launch picks a port and a token, builds the environment and command line
// and spawns one process, with its output readers and exit watcher.
func (a *App) launch(spec *configload.AppSpec, slotIdx int, warned *bool) (*Process, error) {
	port, err := explicitPort(spec)
	if err != nil {
		return nil, errCritical{err}
	}
	if port == 0 {
		if port, err = a.pickPort(); err != nil {
			return nil, err
		}
	}
	token := tokenFor(spec, a.s.newToken)
	ident, err := ResolveIdentity(spec)
	if err != nil {
		return nil, errCritical{err}
	}
	env := backendEnv(spec, ident.environ(a.s.opts.Environ), port, token)
	path, err := resolveProcessPath(spec, envLookup(env, "PATH"), a.s.os.Stat)
	if err != nil {
		return nil, errCritical{err}
	}
	args := backendArgs(spec, port)
	cmd := &Cmd{Path: path, Args: args, Env: env, Dir: spec.Dir, Output: spec.ConsoleRedirection, App: a.vpath, Cred: ident.credential(),
		MemoryLimit: spec.MemoryLimit, CPULimit: spec.CPULimit}
	cmdline := commandLine(path, args)
	d := a.diag.Load()
	d.log.Debug().Str("command", cmdline).Strs("env", env).Int("port", port).Int("slot", slotIdx).Msg("spawning")
	proc, err := a.s.os.Spawn(cmd)
	if err != nil {
		return nil, errCritical{fmt.Errorf("spawn %s: %w", cmdline, err)}
	}
	started := time.Now()
	a.starts.Add(1)
	p := &Process{
		app:     a,
		slot:    slotIdx,
		port:    port,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		token:   token,
		pid:     proc.PID(),
		proc:    proc,
		cmdline: cmdline,
		started: started,
		drained: make(chan struct{}),
		exited:  make(chan struct{}),
		h2c:     spec.BackendProtocol == configload.BackendH2C,
		quit:    make(chan struct{}),
		// periodicRestartRequests is at most 4294967295 (configload).
		recycleAt: uint64(spec.PeriodicRestartRequests),
	}
	tracked := a.s.track(proc)
	stdoutLog := ""
	if cmd.Output {
		file := a.openStdoutLog(spec, started, p.pid, warned)
		if file != nil {
			stdoutLog = file.Name()
		}
		p.out = startOutput(proc, a.log.With().Int("pid", p.pid).Logger(), file,
			rotation{base: spec.StdoutLogFile, maxBytes: spec.StdoutLogMaxBytes, maxFiles: spec.StdoutLogMaxFiles, logs: &a.stdoutLogs})
	}
	a.goHelper(func() {
		status := proc.Wait()
		a.s.untrack(proc)
		p.exitStatus = status
		p.oomKilled = status == "signal: killed" && a.claimOOMKill()
		close(p.exited)
		a.send(event{kind: evExited, p: p})
	})
	if !tracked {
		return nil, errCritical{ErrStopping}
	}
	msg := "backend started"
	if stdoutLog != "" {
		msg = "backend started; its stdout and stderr go to " + stdoutLog
	}
	a.logEvent(zerolog.InfoLevel, "start", msg, func(e *zerolog.Event) {
		e.Int("pid", p.pid).Int("port", port).Int("slot", slotIdx)
		if ident != nil {
			e.Str("user", ident.String())
		}
		if stdoutLog != "" {
			e.Str("stdout_log", stdoutLog)
		}
	})
	return p, nil
}

// openStdoutLog opens the stdout log file when stdoutLogEnabled. If it
// cannot be created the app still starts with its output relayed into the
// log, and the warning is given once per start.
func (a *App) openStdoutLog(spec *configload.AppSpec, started time.Time, pid int, warned *bool) *os.File {
	if !spec.StdoutLogEnabled {
		return nil
	}
	f, err := openStdoutLog(spec.StdoutLogFile, started, pid)
	if err != nil {
		if !*warned {
			*warned = true
			a.log.Warn().Err(err).Int("pid", pid).Msg("could not create the stdout log file; relaying the output into this log")
		}
		return nil
	}
	return f
}

// pickPort chooses a random port in 10000-48000 that 127.0.0.1 can bind,
// up to 10 tries (spec §1.2; the reference checks the listen table, loopgate
// binds).
func (a *App) pickPort() (int, error) {
	for range portTries {
		port := minRandomPort + rand.IntN(maxPort-minRandomPort+1)
		if a.s.os.PortFree(port) {
			return port, nil
		}
	}
	return 0, ErrNoFreePort
}

// waitReady probes p's port until it accepts a connection, backing off from
// 1 ms to 2 ms, so the first request waits at most 2 ms past the listen (a
// probe is a loopback connect refused at once, 31 µs of CPU: 500 a second
// cost about 1.6 % of a core while an app starts). An exit is noticed at once. limit 0 means one check.
func (a *App) waitReady(ctx context.Context, p *Process, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTimer(time.Hour)
	defer tick.Stop()
	d := a.diag.Load()
	backoff := minProbeBackoff
	// The first look at the listeners waits listenCheckEvery: a verdict
	// needs wrongPortGrace anyway, and most apps listen before then.
	wrong := &wrongPortWatch{pid: p.pid, port: p.port, next: time.Now().Add(listenCheckEvery)}
	wrong.os, _ = a.s.os.(listenerOS)
	exited := func() error { return &exitedError{status: p.exitStatus, port: p.port} }
	for {
		if p.hasExited() {
			return exited()
		}
		if ok, err := a.probe(p, probeTimeout); ok {
			if p.hasExited() { // something else answered on the port
				return exited()
			}
			return nil
		} else if err != nil {
			return errCritical{fmt.Errorf("port %d: %w", p.port, err)}
		}
		d.log.Trace().Int("pid", p.pid).Int("port", p.port).Msg("not listening yet")
		if limit == 0 {
			return fmt.Errorf("%w (0s)", ErrStartTimeout)
		}
		if err := wrong.check(time.Now()); err != nil {
			return errCritical{err}
		}
		tick.Reset(backoff)
		select {
		case <-p.exited:
			return exited()
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w (%s, port %d)", ErrStartTimeout, limit, p.port)
		case <-tick.C:
		}
		backoff = min(backoff*2, maxProbeBackoff)
	}
}

// probe checks whether p listens: a TCP connect, or for an h2c app an
// HTTP/2 PING answered. err is set when an h2c app answered in something
// other than HTTP/2.
func (a *App) probe(p *Process, timeout time.Duration) (ok bool, err error) {
	if !p.h2c {
		return a.s.os.Probe(p.port, timeout), nil
	}
	err = a.s.os.ProbeH2C(p.port, timeout)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, ErrNotHTTP2) {
		return false, err
	}
	return false, nil
}

// commandLine renders a command for logs, quoting arguments that need it.
func commandLine(path string, args []string) string {
	var b strings.Builder
	b.WriteString(quoteArg(path))
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

func quoteArg(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\$`") {
		return s
	}
	return strconv.Quote(s)
}
