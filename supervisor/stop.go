package supervisor

import (
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// startStop retires ps.p (it is already out of the published view) and
// stops it on a helper goroutine.
func (a *App) startStop(ps pendingStop) {
	ps.p.retire()
	a.goHelper(func() {
		a.runStop(ps.p, ps.limit, ps.reason)
		a.send(event{kind: evStopped, p: ps.p})
	})
}

// runStop stops p the way spec §4.5 says, after draining it:
//  1. wait for its requests in flight to be released (at most limit);
//  2. POST {APPL_PATH}/iisintegration with MS-ASPNETCORE-EVENT: shutdown and
//     the token; anything but 202 sends SIGTERM to the process group;
//  3. SIGKILL the whole group if it has not exited limit after step 2 began
//     (limit 0: SIGKILL at once, no drain);
//  4. once it has exited, close the upstream when the last request is
//     released (the app goroutine unregisters the port when it sees the
//     exit).
func (a *App) runStop(p *Process, limit time.Duration, reason string) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	if limit > 0 && !p.hasExited() {
		select {
		case <-p.drained:
		case <-p.exited:
		case <-timer.C:
		}
	}
	if !p.hasExited() {
		if limit == 0 {
			p.proc.Signal(syscall.SIGKILL)
		} else {
			if d, ok := p.upstream.(Drainer); ok {
				d.Drain()
			}
			timer.Reset(limit) // Go ≥1.23 timers: no stale tick to drain
			a.goHelper(func() { a.requestShutdown(p, limit) })
			select {
			case <-p.exited:
			case <-timer.C:
				p.proc.Signal(syscall.SIGKILL)
				a.logEvent(zerolog.WarnLevel, "kill", "backend did not stop within shutdownTimeLimit; process group killed",
					func(e *zerolog.Event) { e.Int("pid", p.pid).Int("port", p.port).Dur("limit", limit) })
			}
		}
		waitExit(p)
	}
	a.logEvent(zerolog.InfoLevel, "stop", "backend stopped", func(e *zerolog.Event) {
		e.Int("pid", p.pid).Int("port", p.port).Int("slot", p.slot).Str("reason", reason).Str("exit_status", p.status())
	})
	if p.upstream != nil {
		// The process is gone, so requests still holding it fail fast; wait
		// for them before the forwarder's pool for it is closed.
		t := time.NewTimer(killWait)
		select {
		case <-p.drained:
		case <-t.C:
			a.log.Warn().Int("pid", p.pid).Msg("requests still hold a stopped backend; closing its upstream anyway")
		}
		t.Stop()
		p.upstream.Close()
	}
}

// requestShutdown sends the graceful shutdown request and falls back to
// SIGTERM when it is not answered with 202.
func (a *App) requestShutdown(p *Process, limit time.Duration) {
	url := "http://" + p.addr
	if vp := p.app.vpath; vp != "/" {
		url += vp
	}
	url += "/iisintegration"
	send := a.s.os.SendShutdown
	if p.h2c {
		send = a.s.os.SendShutdownH2C
	}
	code, err := send(url, p.token, limit)
	d := a.diag.Load()
	d.log.Info().Int("pid", p.pid).Int("status", code).AnErr("error", err).Msg("sent the shutdown request")
	if code != 202 && !p.hasExited() {
		p.proc.Signal(syscall.SIGTERM)
	}
}
