package supervisor

import (
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// retiredBit marks Process.active once the process has been taken out of
// rotation; the low bits count requests in flight.
const retiredBit = 1 << 40

// Process is one running backend as handed to the forwarder. It is safe for
// concurrent use; its identity fields never change. A *Process stays valid
// after the process exits: Addr, Port, Token and PID keep their values and
// Release still works.
type Process struct {
	app      *App
	slot     int
	port     int
	addr     string
	token    string
	pid      int
	proc     Proc
	cmdline  string
	started  time.Time
	upstream Upstream
	out      *output
	h2c      bool // backendProtocol="h2c": probes and the shutdown request use HTTP/2

	// active counts requests between Acquire and Release, plus retiredBit
	// once retired; drained is closed when it is retired with none left.
	active     atomic.Int64
	drainedSet atomic.Bool
	drained    chan struct{}
	requests   atomic.Uint64
	checking   atomic.Bool // an Unreachable check is queued or running
	// recycleAt is periodicRestartRequests of the spec the process was
	// started with (0: none): Release pokes the app goroutine when the
	// count reaches it.
	recycleAt uint64
	// quit is closed by the app goroutine (endHelpers) when the process is
	// taken out of service: its pinger stops.
	quit       chan struct{}
	quitClosed bool // owned by the app goroutine

	exited     chan struct{} // closed when the process has exited and been reaped
	exitStatus string        // valid after exited is closed
	oomKilled  bool          // valid after exited is closed: the kernel's OOM killer ended it
	stopping   bool          // owned by the app goroutine: a stop was requested
	stopAsked  atomic.Bool   // a stop was requested while the process ran (see AwaitExit)
}

// Addr is "127.0.0.1:<port>".
func (p *Process) Addr() string { return p.addr }

// Port is the port the process listens on (its ASPNETCORE_PORT).
func (p *Process) Port() int { return p.port }

// Token is the ASPNETCORE_TOKEN the process was started with; the forwarder
// sends it as MS-ASPNETCORE-TOKEN.
func (p *Process) Token() string { return p.token }

// PID is the process id (also its process group id).
func (p *Process) PID() int { return p.pid }

// Upstream is what Options.NewUpstream returned for this process (nil
// without NewUpstream).
func (p *Process) Upstream() Upstream { return p.upstream }

// Release ends the request that Acquire began and counts it as served. Call
// it (or ReleaseUnused) exactly once per Ready outcome, after the last use
// of the process for that request.
func (p *Process) Release() {
	if p.requests.Add(1) == p.recycleAt {
		p.app.pokePool()
	}
	p.leave()
}

// ReleaseUnused ends the request that Acquire began without counting it as
// served: the process never answered it (the forwarder could not connect,
// or retries the request elsewhere).
func (p *Process) ReleaseUnused() { p.leave() }

// Unreachable tells the supervisor that the forwarder could not connect to
// the process. The supervisor probes it at once; a process that is alive but
// no longer listening is killed, counted as a crash and restarted.
func (p *Process) Unreachable() {
	if !p.checking.CompareAndSwap(false, true) {
		return
	}
	select {
	case p.app.unreach <- p:
	default:
		p.checking.Store(false)
	}
}

// acquire counts a request in unless the process has been retired.
func (p *Process) acquire() bool {
	if p.active.Add(1) < retiredBit {
		return true
	}
	p.leave()
	return false
}

func (p *Process) leave() {
	if p.active.Add(-1) == retiredBit {
		p.markDrained()
	}
}

// retire takes the process out of service: later acquires fail, and
// drained closes when the requests in flight have been released.
func (p *Process) retire() {
	if p.active.Load() >= retiredBit {
		return
	}
	if p.active.Add(retiredBit) == retiredBit {
		p.markDrained()
	}
}

func (p *Process) markDrained() {
	if p.drainedSet.CompareAndSwap(false, true) {
		close(p.drained)
	}
}

// status is the exit status, or "" while the process has not been reaped
// (a process can outlive the bounded wait after SIGKILL).
func (p *Process) status() string {
	if p.hasExited() {
		return p.exitStatus
	}
	return ""
}

func (p *Process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// ExitCause is how a process ended, as the forwarder's retry rule needs to
// know it: a request whose process ended by its own hand may have caused
// that end, and is not sent to another process.
type ExitCause uint8

const (
	// ExitNone: the process had not exited when asked, or how it ended is
	// unknown.
	ExitNone ExitCause = iota
	// ExitKilled: it was ended from outside: a signal such as SIGKILL or
	// SIGTERM (the operator), a stop loopgate asked for, or
	// a clean exit (status 0, what a host that handles SIGTERM, as .NET's
	// does, exits with).
	ExitKilled
	// ExitSelf: it ended by its own hand: a non-zero exit status, a
	// signal it raised itself (SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL,
	// SIGTRAP, SIGSYS): .NET's unhandled exception and stack overflow; or
	// the kernel's OOM killer at the app's memoryLimit, which its own
	// allocations reached.
	ExitSelf
)

func (c ExitCause) String() string {
	switch c {
	case ExitKilled:
		return "killed"
	case ExitSelf:
		return "self"
	}
	return "none"
}

// AwaitExit waits up to d for the process to exit and reports how it
// ended; ExitNone if it still runs after d. Safe for concurrent use.
func (p *Process) AwaitExit(d time.Duration) ExitCause {
	if !p.hasExited() {
		if d <= 0 {
			return ExitNone
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			return ExitNone
		}
	}
	if p.stopAsked.Load() {
		return ExitKilled
	}
	if p.oomKilled {
		// Its own allocations, maybe the request's, met the app's
		// memoryLimit: the request would kill the next process too.
		return ExitSelf
	}
	return exitCause(p.exitStatus)
}

// markStopAsked records that loopgate asked p to stop, unless p had
// already exited (a crash is cleaned up by a stop too).
func (p *Process) markStopAsked() {
	if !p.hasExited() {
		p.stopAsked.Store(true)
	}
}

// faultSignals are the signals a process raises against itself.
var faultSignals = []syscall.Signal{syscall.SIGABRT, syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE,
	syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSYS}

// exitCause classifies an exit status as Proc.Wait reports it
// (os.ProcessState's text: "exit status 3", "signal: killed",
// "signal: aborted (core dumped)").
func exitCause(status string) ExitCause {
	if code, ok := strings.CutPrefix(status, "exit status "); ok {
		if code == "0" {
			return ExitKilled
		}
		return ExitSelf
	}
	sig, ok := strings.CutPrefix(status, "signal: ")
	if !ok {
		return ExitNone
	}
	sig = strings.TrimSuffix(sig, " (core dumped)")
	for _, f := range faultSignals {
		if sig == f.String() {
			return ExitSelf
		}
	}
	return ExitKilled
}
