package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/loopgate/loopgate/internal/status"
	"github.com/loopgate/loopgate/supervisor"
)

// appsReady is /readyz's view of the apps: not ready while an app is in
// crashloop (its rapid-fail window refuses to start it, so its requests
// get 502.5) or while a startMode="AlwaysRunning" app has no process ready
// (AppStatus.NotReady). Any other app that is idle, starting, offline or
// whose web.config change was refused does not hold readiness back: it
// either starts on the first request or answers as its operator asked.
func (srv *server) appsReady() (bool, []string) {
	if srv.sup == nil {
		return false, []string{"starting"}
	}
	var why []string
	for _, a := range srv.sup.Status() {
		if a.NotReady != "" && a.State != supervisor.StateCrashLoop {
			// startMode AlwaysRunning with no process ready.
			why = append(why, fmt.Sprintf("app %s: %s", a.Name, a.NotReady))
			continue
		}
		if a.State != supervisor.StateCrashLoop {
			continue
		}
		line := fmt.Sprintf("app %s: crashloop (rapidFailsPerMinute exceeded)", a.Name)
		if a.LastStartError != "" {
			line += "; last start error: " + firstLine(a.LastStartError)
		}
		why = append(why, line)
	}
	return len(why) == 0, why
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// listeners are the front's bound addresses (with the kernel's port for
// ":0"), plain ones first.
func (srv *server) listeners() []status.Listener {
	addrs := srv.front.Addrs()
	out := make([]status.Listener, len(addrs))
	for i, a := range addrs {
		out[i] = status.Listener{Addr: a.String(), TLS: i >= len(srv.cfg.Front.Listen)}
	}
	return out
}

// frontGauges feeds the scrape-time gauges of the front server.
func (srv *server) frontGauges() (int64, int) {
	if srv.front == nil {
		return 0, 0
	}
	return srv.front.InFlight(), srv.front.OpenConns()
}

// appLoad feeds the scrape-time per-app gauges of the front server.
func (srv *server) appLoad(app string) (int64, int, int, int) {
	if srv.front == nil {
		return 0, 0, 0, 0
	}
	l, _ := srv.front.AppLoad(app)
	return l.InFlight, l.UpstreamOpen, l.UpstreamBusy, l.Streams
}

// statusLine is the one-line summary for `systemctl status`.
func (srv *server) statusLine() string {
	var ls []string
	for _, l := range srv.listeners() {
		ls = append(ls, l.Addr)
	}
	return fmt.Sprintf("serving %d app(s) on %s", len(srv.sup.Apps()), strings.Join(ls, ", "))
}

// snapshot builds the /status document.
func (srv *server) snapshot() status.Snapshot {
	now := time.Now()
	s := status.Snapshot{
		Version:       version,
		Started:       srv.started,
		UptimeSeconds: now.Sub(srv.started).Seconds(),
		Draining:      srv.draining.Load(),
		Acceleration:  srv.accelSt,
		PID:           os.Getpid(),
	}
	if e := srv.lastUpgradeErr.Load(); e != nil {
		s.LastUpgradeError = *e
	}
	if srv.front != nil {
		s.Listeners = srv.listeners()
	}
	if srv.accel != nil {
		s.Acceleration = srv.accel.status()
	}
	if srv.sup == nil {
		return s
	}
	apps := srv.sup.Apps()
	for i, a := range srv.sup.Status() {
		app := status.App{
			Name: a.Name, VirtualPath: a.VirtualPath, Dir: a.Dir, State: string(a.State),
			ConfigError: a.ConfigError, LastStartError: a.LastStartError, Offline: a.Offline,
			Starts: a.Starts, Crashes: a.Crashes, Restarts: a.Restarts, RapidFailBlocks: a.RapidFailBlocks,
			Recycles: a.Recycles, RecyclesByReason: a.RecyclesByReason, ConfigReloadsOK: a.ConfigReloadsOK, ConfigReloadsFailed: a.ConfigReloadsFailed,
			Processes: make([]status.Process, 0, len(a.Processes)),
			NotReady:  a.NotReady, StartFailures: a.StartFailures, Release: a.Release,
		}
		for _, p := range a.Processes {
			ps := status.Process{Slot: p.Slot, PID: p.PID, Port: p.Port, State: string(p.State), Started: p.Started,
				Restarts: p.Restarts, Requests: p.Requests, LastExit: p.LastExit}
			if !p.Started.IsZero() {
				ps.UptimeSeconds = now.Sub(p.Started).Seconds()
			}
			app.Processes = append(app.Processes, ps)
		}
		if u, ok := apps[i].Usage(); ok {
			app.Usage = &status.Usage{CPUSeconds: u.CPU.Seconds(), MemoryBytes: u.MemoryBytes}
		}
		s.Apps = append(s.Apps, app)
	}
	return s
}
