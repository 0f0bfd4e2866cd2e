package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/loopgate/loopgate/bpf"
	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/admin"
	"github.com/loopgate/loopgate/internal/control"
	"github.com/loopgate/loopgate/internal/logsetup"
	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/loopgate/loopgate/internal/sdnotify"
	"github.com/loopgate/loopgate/internal/status"
	"github.com/loopgate/loopgate/supervisor"
	"github.com/rs/zerolog"
)

// runServe is `loopgate serve`.
func runServe(args, environ []string, stdout, stderr io.Writer) int {
	cfg, err := parseServe(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, serveHelp)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopgate serve: %v\nRun 'loopgate serve --help' for usage.\n", err)
		return exitUsage
	}
	// Millisecond timestamps: access logs and lifecycle events are read
	// against each other.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	log, sink, err := logsetup.New(logsetup.Options{Format: cfg.LogFormat, Level: cfg.LogLevel, File: cfg.LogFile, Stderr: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "loopgate serve: %v\n", err)
		return exitFailure
	}
	defer sink.Close()
	return serve(cfg, environ, log, sink, stderr)
}

// backendEnviron is loopgate's environment minus what belongs to loopgate's
// own service manager: a backend that speaks sd_notify (a .NET app with
// UseSystemd) must not report READY=1 on loopgate's behalf.
func backendEnviron(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case sdnotify.EnvVar, tableflipEnv, upgradeWarmEnv, "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// startAccel applies --accel. With "on" a failure is fatal (the error is
// returned); with "auto" it is logged and serve goes on over plain TCP.
func startAccel(mode string, log zerolog.Logger) (*bpf.Accel, status.Accel, error) {
	st := status.Accel{Mode: mode}
	if mode == "off" {
		st.Reason = "disabled with --accel off"
		return nil, st, nil
	}
	err := bpf.Probe()
	var acc *bpf.Accel
	if err == nil {
		acc, err = bpf.Load(bpf.Options{})
	}
	if err != nil {
		if mode == "on" {
			return nil, st, fmt.Errorf("--accel on: eBPF sockmap acceleration unavailable: %w", err)
		}
		st.Reason = err.Error()
		log.Warn().Str("event", "accel_unavailable").Err(err).Msg("eBPF sockmap acceleration unavailable; forwarding over plain loopback TCP (--accel off silences this)")
		return nil, st, nil
	}
	st.Active = true
	log.Info().Str("event", "accel_on").Str("cgroup", acc.CgroupPath()).
		Msg("eBPF sockmap acceleration on: loopback traffic to backends bypasses the TCP stack")
	return acc, st, nil
}

// server is everything a running serve holds.
type server struct {
	cfg      *serveConfig
	log      zerolog.Logger
	sink     *logsetup.Sink
	notify   *sdnotify.Notifier
	sup      *supervisor.Supervisor
	front    *fastpath.Server
	admin    *admin.Server
	adminLn  net.Listener
	accel    *bpf.Accel
	control  *control.Server // nil without --control
	accelSt  status.Accel
	started  time.Time
	draining atomic.Bool

	// Binary upgrade (upgrade.go): upg is nil when tableflip is
	// unavailable (upgErr says why). upgrading lists the callers waiting
	// for the upgrade in progress (nil when none runs; owned by the serve
	// loop); upgraded is set once a new process took over.
	upg            *tableflip.Upgrader
	upgErr         error
	listenMu       sync.Mutex
	listenSeen     map[string]int // listenFunc's count of binds per address
	upgrading      []upgradeCall
	upgraded       bool
	upgradeReq     chan upgradeCall
	upgradeDone    chan upgradeOutcome
	lastUpgradeErr atomic.Pointer[string]
}

// serve runs the edge until a signal stops it and returns the exit status.
func serve(cfg *serveConfig, environ []string, log zerolog.Logger, sink *logsetup.Sink, stderr io.Writer) int {
	srv := &server{cfg: cfg, log: log, sink: sink, started: time.Now(),
		upgradeReq: make(chan upgradeCall), upgradeDone: make(chan upgradeOutcome, 1)}
	notify, err := sdnotify.FromEnviron(environ)
	if err != nil {
		log.Warn().Err(err).Msg("not notifying the service manager")
	}
	srv.notify = notify

	specs, loaded := loadApps(cfg.Apps, environ, log)
	if loaded.errors > 0 {
		for _, p := range loaded.problems {
			if !p.Warning {
				fmt.Fprintln(stderr, p.String())
			}
		}
		for _, err := range loaded.errs {
			fmt.Fprintf(stderr, "loopgate serve: %v\n", err)
		}
		fmt.Fprintf(stderr, "loopgate serve: configuration invalid; nothing started (check it with 'loopgate check')\n")
		return exitUsage
	}
	for _, p := range loaded.problems {
		log.Warn().Str("event", "config_warning").Str("app", p.app).Msg(p.String())
	}

	// Signals are caught from here on, before anything is started, so a
	// SIGTERM during start-up still stops what was started.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigc)

	// Listening sockets go through tableflip: inherited when this process
	// was started by `loopgate upgrade`, handed on by the next one.
	srv.upg, srv.upgErr = processUpgrader(cfg.upgradeTimeout())
	if srv.upgErr != nil {
		srv.upg = nil
		log.Warn().Err(srv.upgErr).Msg("binary upgrade (loopgate upgrade, SIGUSR2) unavailable")
	}
	defer func() {
		if srv.upg != nil {
			srv.upg.Stop()
		}
	}()
	cfg.Front.ListenFunc = srv.listenFunc()

	srv.accel, srv.accelSt, err = startAccel(cfg.Accel, log)
	if err != nil {
		log.Error().Err(err).Msg("not starting")
		return exitFailure
	}
	defer srv.closeAccel()

	var ports supervisor.PortRegistry
	if srv.accel != nil {
		ports = srv.accel
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.VirtualPath
	}
	m := metrics.New(metrics.Options{Version: version, Apps: names, Snapshot: srv.snapshot, Front: srv.frontGauges, AppLoad: srv.appLoad})
	if cfg.Admin != "" {
		hosts := cfg.AdminHosts
		if h, _, _ := net.SplitHostPort(cfg.Admin); admin.CheckHost(h) == nil {
			hosts = append(hosts[:len(hosts):len(hosts)], h) // --admin myhost:9180 answers to myhost
		}
		srv.admin = admin.New(admin.Options{Snapshot: srv.snapshot, Gatherer: m.Registry(), Logger: log, Hosts: hosts, Ready: srv.appsReady, Upgrade: srv.requestUpgrade})
		srv.adminLn, err = srv.listenFunc()("tcp", cfg.Admin)
		if err != nil {
			log.Error().Err(err).Str("admin", cfg.Admin).Msg("not starting: admin listener")
			return exitFailure
		}
		defer srv.adminLn.Close() // a no-op after the admin server closed it
	}
	cfg.Front.Observer = newObserver(m, names, log, cfg.AccessLog)
	srv.sup, err = supervisor.New(specs, supervisor.Options{
		Logger:      log,
		Environ:     backendEnviron(environ),
		Ports:       ports,
		NewUpstream: cfg.Front.NewUpstream,
		Contain:     true,
	})
	if err != nil {
		log.Error().Err(err).Msg("not starting")
		return exitFailure
	}
	if err := srv.startControl(); err != nil {
		srv.sup.Kill()
		log.Error().Err(err).Msg("not starting")
		return exitFailure
	}
	defer srv.closeControl()
	apps := make([]fastpath.App, 0, len(srv.sup.Apps()))
	for _, a := range srv.sup.Apps() {
		apps = append(apps, fastpath.FromSupervisor(a))
	}
	srv.front, err = fastpath.New(cfg.Front, apps, log)
	if err == nil {
		// Bound now, so a busy port is reported before serve says it is ready.
		err = srv.front.Listen()
	}
	if err != nil {
		srv.sup.Kill()
		if errors.Is(err, fastpath.ErrConfig) {
			fmt.Fprintf(stderr, "loopgate serve: %v\n", err)
			return exitUsage
		}
		log.Error().Err(err).Msg("not starting")
		return exitFailure
	}
	failc := make(chan error, 2)
	go func() {
		if err := srv.front.Serve(); err != nil {
			failc <- err
		}
	}()
	if srv.admin != nil {
		go func() {
			if err := srv.admin.Serve(srv.adminLn); err != nil {
				failc <- err
			}
		}()
	}
	inherited := srv.upg != nil && srv.upg.HasParent()
	if inherited {
		// Started by an upgrade: the apps the old process runs start here
		// before the old one is told this one is ready.
		if err := srv.readyAfterUpgrade(); err != nil {
			log.Error().Str("event", "upgrade_failed").Err(err).Msg("not taking over from the old loopgate; it keeps serving")
			srv.kill()
			return exitFailure
		}
	} else if srv.upg != nil {
		if err := srv.upg.Ready(); err != nil {
			log.Warn().Err(err).Msg("binary upgrade unavailable")
		}
	}
	if srv.admin != nil {
		srv.admin.SetHealth(admin.Serving)
	}
	srv.logStartup(specs)
	if !inherited {
		// After an upgrade the old process hands over MAINPID= and READY=1.
		srv.sdNotify(srv.notify.Ready, srv.statusLine())
	}
	return srv.loop(sigc, failc)
}

// loop handles signals until loopgate stops.
func (srv *server) loop(sigc <-chan os.Signal, failc <-chan error) int {
	for {
		select {
		case sig := <-sigc:
			switch sig {
			case syscall.SIGHUP:
				srv.reload()
			case syscall.SIGUSR1:
				if err := srv.sink.Reopen(); err != nil {
					srv.log.Error().Err(err).Msg("SIGUSR1: reopening the log file failed; still logging to the old one")
				} else if srv.sink.Path() != "" {
					srv.log.Info().Str("event", "log_reopen").Str("file", srv.sink.Path()).Msg("SIGUSR1: log file reopened")
				}
				srv.sup.RotateStdoutLogs() // the apps' stdout log files continue in new files
			case syscall.SIGUSR2:
				srv.startUpgrade(upgradeCall{}, "SIGUSR2")
			case syscall.SIGQUIT:
				srv.log.Warn().Str("event", "kill").Msg("SIGQUIT: stopping at once; killing every backend")
				srv.kill()
				return exitOK
			default: // SIGTERM, SIGINT
				if !srv.shutdownDelay(sig, sigc, failc) {
					return exitOK
				}
				return srv.drain(sig, sigc, exitOK)
			}
		case c := <-srv.upgradeReq:
			srv.startUpgrade(c, "loopgate upgrade")
		case o := <-srv.upgradeDone:
			if srv.finishUpgrade(o) {
				srv.upgraded = true
				return srv.drain(nil, sigc, exitOK)
			}
		case err := <-failc:
			srv.log.Error().Err(err).Msg("a listener failed; draining and stopping")
			return srv.drain(nil, sigc, exitFailure)
		}
	}
}

// reload is SIGHUP: every web.config and the TLS certificates again.
func (srv *server) reload() {
	srv.sdNotify(srv.notify.Reloading, "reloading configuration")
	srv.log.Info().Str("event", "reload").Msg("SIGHUP: re-reading every web.config and the TLS certificates")
	// The supervisor logs each broken web.config itself (event config_error).
	errs := srv.sup.Reload()
	if err := srv.front.ReloadCertificates(); err != nil {
		errs = append(errs, err)
		srv.log.Error().Str("event", "tls_reload_failed").Err(err).Msg("TLS certificates not reloaded; the previous ones stay in use")
	}
	line := srv.statusLine()
	if len(errs) > 0 {
		line = fmt.Sprintf("%s; last reload had %d error(s), see the log", line, len(errs))
		srv.log.Warn().Str("event", "reload_done").Int("errors", len(errs)).Msg("reload done with errors; what failed keeps its running configuration")
	} else {
		srv.log.Info().Str("event", "reload_done").Msg("reload done")
	}
	srv.sdNotify(srv.notify.Ready, line)
}

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
func (srv *server) appLoad(app string) (int64, int, int) {
	if srv.front == nil {
		return 0, 0, 0
	}
	l, _ := srv.front.AppLoad(app)
	return l.InFlight, l.UpstreamOpen, l.UpstreamBusy
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

func (srv *server) sdNotify(send func(string) error, line string) {
	if err := send(line); err != nil {
		srv.log.Warn().Err(err).Msg("notifying the service manager")
	}
}

// statusLine is the one-line summary for `systemctl status`.
func (srv *server) statusLine() string {
	var ls []string
	for _, l := range srv.listeners() {
		ls = append(ls, l.Addr)
	}
	return fmt.Sprintf("serving %d app(s) on %s", len(srv.sup.Apps()), strings.Join(ls, ", "))
}

// logStartup says what listens where and which apps are mounted: the first
// thing a newcomer reads.
func (srv *server) logStartup(specs []*configload.AppSpec) {
	for _, l := range srv.listeners() {
		scheme := "http"
		if l.TLS {
			scheme = "https"
		}
		srv.log.Info().Str("event", "listening").Str("addr", l.Addr).Bool("tls", l.TLS).
			Msgf("listening on %s://%s", scheme, l.Addr)
	}
	if srv.adminLn != nil {
		addr := srv.adminLn.Addr().String()
		srv.log.Info().Str("event", "admin").Str("addr", addr).
			Msgf("admin endpoint on http://%s: the status page at /, and /status, /metrics, /healthz, /readyz, /livez", addr)
	}
	for _, s := range specs {
		cmd := strings.Join(append([]string{s.ProcessPath}, s.Arguments...), " ")
		srv.log.Info().Str("event", "mounted").Str("app", s.VirtualPath).Str("dir", s.Dir).Str("command", cmd).
			Msgf("app %s mounted from %s; it starts on the first request", s.VirtualPath, s.Dir)
	}
	srv.log.Info().Str("event", "ready").Str("version", version).Msg("loopgate ready")
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
		if c, err := srv.accel.Counters(); err == nil {
			s.Acceleration.Redirected, s.Acceleration.Passed, s.Acceleration.Fallbacks = c.Redirected, c.Passed, c.Fallbacks
		}
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

func signame(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return s.String()
}
