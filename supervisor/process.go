package supervisor

import (
	"sync/atomic"
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

	// active counts requests between Acquire and Release, plus retiredBit
	// once retired; drained is closed when it is retired with none left.
	active     atomic.Int64
	drainedSet atomic.Bool
	drained    chan struct{}
	requests   atomic.Uint64
	checking   atomic.Bool // an Unreachable check is queued or running

	exited     chan struct{} // closed when the process has exited and been reaped
	exitStatus string        // valid after exited is closed
	stopping   bool          // owned by the app goroutine: a stop was requested
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
	p.requests.Add(1)
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
