package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/loopgate/loopgate/internal/admin"
)

// shutdownDelay is --shutdown-delay: readiness (and /healthz) fails at
// once, while the listeners keep accepting and requests are served as
// before, so that load balancers and Kubernetes endpoints, which learn of a
// stop late, stop sending traffic before a connection could be refused. It
// returns false when a second SIGTERM/SIGINT or a SIGQUIT stopped loopgate
// at once during the delay (everything is then killed), true when the drain
// should start: the delay is over, or a listener failed.
func (srv *server) shutdownDelay(sig os.Signal, sigc <-chan os.Signal, failc <-chan error) bool {
	d := srv.cfg.ShutdownDelay
	if d <= 0 {
		return true
	}
	srv.draining.Store(true)
	if srv.admin != nil {
		srv.admin.SetHealth(admin.Draining)
	}
	srv.sdNotify(srv.notify.Status, fmt.Sprintf("%s: not ready, still serving for --shutdown-delay %v before draining", signame(sig), d))
	srv.log.Info().Str("event", "shutdown_delay").Str("signal", signame(sig)).Str("shutdown_delay", d.String()).
		Msgf("%s: /readyz and /healthz are red; still serving for %v before the drain", signame(sig), d)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case err := <-failc:
			srv.log.Error().Err(err).Msg("a listener failed during the shutdown delay; draining now")
			return true
		case s := <-sigc:
			if srv.signalWhileStopping(s, "the shutdown delay") {
				return false
			}
		}
	}
}

// drain is the graceful stop of DESIGN.md §1: health red first, listeners
// closed, in-flight requests finished up to --drain-timeout, then every
// backend shut down as in spec §4.5. A second SIGTERM/SIGINT or a SIGQUIT
// during the drain stops at once.
func (srv *server) drain(sig os.Signal, sigc <-chan os.Signal, code int) int {
	srv.draining.Store(true)
	if srv.admin != nil {
		srv.admin.SetHealth(admin.Draining)
	}
	srv.stopUpgrades()
	name := "failure"
	switch {
	case srv.upgraded:
		name = "upgrade"
	case sig != nil:
		name = signame(sig)
	}
	// STOPPING=1 once the listeners are closed: from then on a connect
	// is refused.
	srv.front.StopAccepting()
	srv.sdNotify(srv.notify.Stopping, "draining ("+name+")")
	srv.log.Info().Str("event", "drain").Str("signal", name).Str("drain_timeout", srv.cfg.DrainTimeout.String()).
		Msg("draining: health is red, listeners closed, waiting for in-flight requests")

	done := make(chan int, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.DrainTimeout)
		defer cancel()
		if srv.upgraded && srv.front != nil {
			// After an upgrade WebSocket tunnels get the drain timeout too;
			// on SIGTERM they are closed at once.
			_ = srv.front.WaitTunnels(ctx)
		}
		if err := srv.stopFront(ctx); err != nil {
			srv.log.Warn().Str("event", "drain_timeout").Err(err).Msg("--drain-timeout reached; cutting the requests still in flight")
		}
		srv.log.Info().Str("event", "backends_stop").Msg("stopping backends")
		// The supervisor bounds each backend by its shutdownTimeLimit; this
		// only guards against a stuck stop.
		ctx2, cancel2 := context.WithTimeout(context.Background(), srv.backendStopBound())
		defer cancel2()
		if err := srv.sup.Shutdown(ctx2); err != nil {
			srv.log.Error().Err(err).Msg("backends did not stop in time; killed")
		}
		done <- code
	}()
	for {
		select {
		case c := <-done:
			srv.shutdownAdmin()
			srv.log.Info().Str("event", "stopped").Msg("loopgate stopped")
			return c
		case s := <-sigc:
			if srv.signalWhileStopping(s, "drain") {
				return code
			}
		}
	}
}

// stopUpgrades ends what a stop leaves of the upgrade machinery: an upgrade
// in progress is interrupted (tableflip kills the new process) and its
// callers are told.
//
// It also closes tableflip's copies of the listening sockets, so that
// closing the listeners refuses new connections; after an upgrade
// tableflip has closed them already. The control socket stays until exit
// (controlFdPrefix).
func (srv *server) stopUpgrades() {
	if srv.upg != nil {
		srv.upg.Stop()
	}
	for _, c := range srv.upgrading {
		if c.reply != nil {
			c.reply <- upgradeOutcome{err: errors.New("loopgate is stopping; upgrade abandoned")}
		}
	}
	srv.upgrading = nil
}

// signalWhileStopping handles a signal that arrives during phase (the
// shutdown delay or the drain): a second stop signal kills everything at
// once and reports true; SIGUSR1 reopens the log; others are ignored.
func (srv *server) signalWhileStopping(s os.Signal, phase string) bool {
	switch s {
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT:
		srv.log.Warn().Str("event", "kill").Str("signal", signame(s)).Msgf("signal during %s: stopping at once; killing every backend", phase)
		srv.kill()
		return true
	case syscall.SIGUSR1:
		srv.sink.Reopen()
	}
	return false
}

// kill stops everything at once (SIGQUIT).
func (srv *server) kill() {
	srv.draining.Store(true)
	srv.stopUpgrades()
	if srv.admin != nil {
		srv.admin.SetHealth(admin.Draining)
	}
	srv.front.StopAccepting()
	srv.sdNotify(srv.notify.Stopping, "stopping at once")
	srv.sup.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.stopFront(ctx)
	srv.shutdownAdmin()
}

func (srv *server) stopFront(ctx context.Context) error {
	if srv.front == nil {
		return nil
	}
	return srv.front.Shutdown(ctx)
}

// backendStopBound is the longest shutdownTimeLimit of any app plus a
// margin for the shutdown request and process reaping.
func (srv *server) backendStopBound() time.Duration {
	var longest time.Duration
	for _, a := range srv.sup.Apps() {
		if d := a.Spec().ShutdownTimeLimit; d > longest {
			longest = d
		}
	}
	return longest + 5*time.Second
}

func (srv *server) shutdownAdmin() {
	if srv.admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.admin.Shutdown(ctx)
}

func (srv *server) closeAccel() {
	if srv.accel != nil {
		if err := srv.accel.Close(); err != nil {
			srv.log.Warn().Err(err).Msg("detaching the eBPF programs")
		}
	}
}
