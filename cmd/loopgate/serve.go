package main

import (
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
	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/admin"
	"github.com/loopgate/loopgate/internal/control"
	"github.com/loopgate/loopgate/internal/logsetup"
	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/loopgate/loopgate/internal/sdnotify"
	"github.com/loopgate/loopgate/internal/status"
	"github.com/loopgate/loopgate/supervisor"
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
	accel    *accelLoader    // nil with --accel off
	accelSt  status.Accel    // with --accel off
	control  *control.Server // nil without --control
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

	// The eBPF programs load while the rest starts (about 80 ms here):
	// requests before they are attached go over plain TCP.
	var ports supervisor.PortRegistry
	if cfg.Accel == "off" {
		srv.accelSt = status.Accel{Mode: "off", Reason: "disabled with --accel off"}
	} else {
		srv.accel = loadAccel(cfg.Accel, log)
		ports = srv.accel
		cfg.Front.Sockmap = srv.accel
	}
	defer srv.closeAccel()
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
	if cfg.Accel == "on" {
		// --accel on refuses to run without the fast path: ready (and
		// taking over from an upgrade's old process) only once it is
		// attached.
		if err := srv.accel.wait(); err != nil {
			log.Error().Err(err).Msg("not starting")
			srv.kill()
			return exitFailure
		}
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

func (srv *server) sdNotify(send func(string) error, line string) {
	if err := send(line); err != nil {
		srv.log.Warn().Err(err).Msg("notifying the service manager")
	}
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
