package main

// The control channel: serve's side (the handler behind the control
// socket) and the subcommands that use it, `loopgate recycle`, `stop` and
// `start` (IIS: appcmd recycle apppool, stop apppool, start apppool).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/loopgate/loopgate/internal/control"
	"github.com/loopgate/loopgate/supervisor"
)

// defaultControlPath is where serve puts the control socket, and the
// subcommands look for it, without --control.
func defaultControlPath() string { return control.DefaultPath(os.Geteuid(), os.Getenv) }

// controlTimeout is the subcommands' default --timeout: long enough for a
// recycle whose new processes take their whole startupTimeLimit.
const controlTimeout = 5 * time.Minute

const controlFlagsHelp = `  --control PATH   the control socket of the running serve (default: serve's
                   default, ` + "`loopgate serve --help`" + ` says where)
  --timeout D      give up waiting for the answer after D (default 5m0s); the
                   operation itself goes on
`

// controlHelp is each subcommand's --help.
var controlHelp = map[string]string{
	control.Recycle: `usage: loopgate recycle [--control PATH] [--timeout D] [VPATH...]

Recycles the processes of the apps mounted at VPATH (every app without
one), as appcmd recycle apppool does on IIS: each process is replaced by a
new one, which is ready before the old one leaves the rotation and drains
(overlapped; with an explicit ASPNETCORE_PORT the old one stops first), so
no request fails. The rapid-fail window is cleared. It waits until the new
processes are ready, or failed to start (then the old ones keep serving).
An app that runs no process has nothing to recycle; a stopped app is an
error. The log line (event recycle), /status and
loopgate_app_recycles_total give the reason "manual".

Exit status 0 when every app was recycled, 1 when one failed or serve
cannot be reached, 2 on a usage error or an unknown VPATH.

flags:
` + controlFlagsHelp,
	control.Stop: `usage: loopgate stop [--control PATH] [--timeout D] VPATH...

Stops the apps mounted at VPATH, as appcmd stop apppool does on IIS: their
processes are drained and stopped (the shutdown request, SIGTERM, then
SIGKILL after shutdownTimeLimit), and until 'loopgate start' requests get
503 Service Unavailable, and nothing (a request, a crash, a web.config
change) starts a process. It waits until the processes have exited. A
restart of loopgate serve starts every app again.

Exit status 0 when every app is stopped, 1 when serve cannot be reached,
2 on a usage error or an unknown VPATH.

flags:
` + controlFlagsHelp,
	control.Start: `usage: loopgate start [--control PATH] [--timeout D] VPATH...

Starts the apps mounted at VPATH that 'loopgate stop' stopped, as appcmd
start apppool does on IIS: the rapid-fail window is cleared and the next
request starts the app's processes.

Exit status 0 when every app is started, 1 when serve cannot be reached,
2 on a usage error or an unknown VPATH.

flags:
` + controlFlagsHelp,
}

// runControl is `loopgate recycle|stop|start [flags] VPATH...`.
func runControl(cmd string, args []string, stdout, stderr io.Writer) int {
	usage := strings.SplitN(controlHelp[cmd], "\n", 2)[0] + "\nRun 'loopgate " + cmd + " --help' for more.\n"
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("control", defaultControlPath(), "")
	timeout := fs.Duration("timeout", controlTimeout, "")
	vpaths, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, controlHelp[cmd])
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopgate %s: %s\n%s", cmd, flagError(fs, err), usage)
		return exitUsage
	}
	if *path == "" {
		fmt.Fprintf(stderr, "loopgate %s: --control is empty\n%s", cmd, usage)
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "loopgate %s: --timeout must be positive\n%s", cmd, usage)
		return exitUsage
	}
	if len(vpaths) == 0 && cmd != control.Recycle {
		fmt.Fprintf(stderr, "loopgate %s: name the app: its virtual path, e.g. / or /api\n%s", cmd, usage)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := control.Do(ctx, *path, control.Request{Command: cmd, Apps: vpaths})
	if err != nil {
		fmt.Fprintf(stderr, "loopgate %s: %v\n", cmd, err)
		if errors.Is(err, control.ErrUnreachable) {
			fmt.Fprintf(stderr, "is `loopgate serve` running with --control %s? (as the same user: the default path depends on it)\n", *path)
		} else if errors.Is(err, os.ErrPermission) {
			fmt.Fprintf(stderr, "the socket is for loopgate's user (and --control-group's members) only\n")
		}
		return exitFailure
	}
	if resp.Error != "" {
		fmt.Fprintf(stderr, "loopgate %s: %s\n", cmd, resp.Error)
		return exitUsage
	}
	code := exitOK
	for _, r := range resp.Results {
		if r.Error != "" {
			code = exitFailure
			if r.Message != "" {
				fmt.Fprintf(stdout, "%s: %s\n", r.App, r.Message)
			}
			fmt.Fprintf(stderr, "loopgate %s: %s: %s\n", cmd, r.App, r.Error)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", r.App, r.Message)
	}
	return code
}

// handleControl answers a control request: the apps are named by virtual
// path (case as IIS routes: ASCII case-insensitive; the leading slash may
// be left out), each is handled at once, and the answer lists them in the
// order asked.
func (srv *server) handleControl(ctx context.Context, req control.Request) control.Response {
	apps := srv.sup.Apps()
	var op func(a *supervisor.App) (string, error)
	switch req.Command {
	case control.Recycle:
		op = func(a *supervisor.App) (string, error) { return a.Recycle(ctx, supervisor.RecycleManual) }
	case control.Stop:
		op = func(a *supervisor.App) (string, error) { return a.Stop(ctx) }
	case control.Start:
		op = func(a *supervisor.App) (string, error) { return a.Start(ctx) }
	default:
		return control.Response{Error: fmt.Sprintf("unknown command %q (recycle, stop or start)", req.Command)}
	}
	var chosen []*supervisor.App
	if len(req.Apps) == 0 {
		if req.Command != control.Recycle {
			return control.Response{Error: "name the app to " + req.Command}
		}
		chosen = apps
	}
	seen := map[*supervisor.App]bool{}
	for _, name := range req.Apps {
		a := findApp(apps, name)
		if a == nil {
			var names []string
			for _, a := range apps {
				names = append(names, a.VirtualPath())
			}
			return control.Response{Error: fmt.Sprintf("no app is mounted at %q (mounted: %s)", name, strings.Join(names, ", "))}
		}
		if !seen[a] {
			seen[a] = true
			chosen = append(chosen, a)
		}
	}
	srv.log.Info().Str("event", "control").Str("command", req.Command).Strs("apps", req.Apps).Msg("control request")
	results := make([]control.Result, len(chosen))
	var wg sync.WaitGroup
	for i, a := range chosen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, err := op(a)
			results[i] = control.Result{App: a.VirtualPath(), Message: msg}
			if err != nil {
				results[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	return control.Response{Results: results}
}

// findApp finds the app mounted at name: "/api", "api", "/api/" and
// "/API" all name /api.
func findApp(apps []*supervisor.App, name string) *supervisor.App {
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	if len(name) > 1 {
		name = strings.TrimRight(name, "/")
		if name == "" {
			name = "/"
		}
	}
	for _, a := range apps {
		if strings.EqualFold(a.VirtualPath(), name) {
			return a
		}
	}
	return nil
}

// startControl opens the control socket (--control). An explicit path that
// cannot be used stops serve from starting; the default one in use (another
// serve with the default) or unusable only costs this serve its socket,
// with a warning.
func (srv *server) startControl() error {
	cfg := srv.cfg
	if cfg.Control == "" {
		return nil
	}
	opts := control.Options{Path: cfg.Control, Group: cfg.ControlGroup, Handler: srv.handleControl}
	handedOver := false // already among the files tableflip hands on
	// In a binary upgrade the socket is handed over like the listeners
	// (upgrade.go), so recycle, stop and start reach whichever serves.
	if srv.upg != nil {
		if abs, err := filepath.Abs(cfg.Control); err == nil {
			opts.Inherited, handedOver = srv.inheritedControl(abs)
		}
	}
	cs, err := control.Listen(opts)
	if err != nil {
		if cfg.ControlExplicit || cfg.ControlGroup != "" {
			return err
		}
		srv.log.Warn().Str("event", "control_unavailable").Err(err).
			Msg("no control socket: loopgate recycle, stop and start cannot reach this serve (give --control a path of its own)")
		return nil
	}
	srv.control = cs
	if srv.upg != nil && !handedOver {
		if err := srv.handOverControl(cs); err != nil {
			srv.log.Warn().Err(err).Msg("the control socket will not be handed over in a binary upgrade")
		}
	}
	srv.log.Info().Str("event", "control_socket").Str("path", cs.Path()).
		Msgf("control socket on %s (loopgate recycle, stop, start)", cs.Path())
	go func() {
		if err := cs.Serve(); err != nil {
			srv.log.Error().Str("event", "control_failed").Err(err).Msg("the control socket stopped accepting")
		}
	}()
	return nil
}

// controlFdPrefix names the control socket among the files tableflip
// hands over, followed by its absolute path. It goes as a plain file, not
// as a listener: tableflip unlinks a Unix listener's path when it stops
// (Upgrader.Stop, at the start of every drain), and the socket must stay
// reachable until this serve exits (control.Server.Close removes it), as
// nginx's and HAProxy's runtime sockets do during a graceful stop.
const controlFdPrefix = "loopgate-control:"

// handOverControl registers cs with tableflip for the next binary.
func (srv *server) handOverControl(cs *control.Server) error {
	f, err := cs.Listener().File()
	if err != nil {
		return err
	}
	defer f.Close()
	return srv.upg.Fds.AddFile(controlFdPrefix+cs.Path(), f)
}

// inheritedControl is the control socket at path a previous binary handed
// over, or nil; asFile says it came as controlFdPrefix's file, which
// tableflip then hands on to the next binary by itself. A parent from
// before controlFdPrefix handed it over as a listener, which is taken too.
func (srv *server) inheritedControl(path string) (ul *net.UnixListener, asFile bool) {
	var ln net.Listener
	if f, _ := srv.upg.Fds.File(controlFdPrefix + path); f != nil {
		ln, _ = net.FileListener(f)
		f.Close()
		asFile = true
	} else {
		ln, _ = srv.upg.Fds.Listener("unix", path)
	}
	if ln == nil {
		return nil, false
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		return ul, asFile
	}
	ln.Close()
	return nil, false
}

func (srv *server) closeControl() {
	if srv.control != nil {
		srv.control.Close()
	}
}
