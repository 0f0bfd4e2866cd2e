// Command loopgate hosts ASPNETCORE_PORT-speaking apps on Linux the way the
// ASP.NET Core Module's out-of-process hosting model does on IIS.
//
// The command-line contract is in DESIGN.md §1; run `loopgate --help`.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/loopgate/loopgate/internal/cgroup"
)

// version is set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses (DESIGN.md §1).
const (
	exitOK      = 0 // a clean stop
	exitFailure = 1 // a runtime failure
	exitUsage   = 2 // a usage or configuration error
)

func main() {
	// Started again as the keeper of the backends' cgroups (supervisor
	// Options.Contain): that is all this process does.
	cgroup.KeeperMain()
	if code, ok := runAsInit(os.Environ(), os.Stderr); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit status.
func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(rest, environ, stdout, stderr)
	case "check":
		return runCheck(rest, environ, stdout, stderr)
	case "status":
		return runStatus(rest, stdout, stderr)
	case "recycle", "stop", "start":
		return runControl(cmd, rest, stdout, stderr)
	case "upgrade":
		return runUpgrade(rest, stdout, stderr)
	case "version", "--version", "-version":
		if len(rest) == 1 && (rest[0] == "-h" || rest[0] == "-help" || rest[0] == "--help") {
			fmt.Fprint(stdout, "usage: loopgate version\n\nPrints loopgate's version, the Go version it was built with and the platform.\n")
			return exitOK
		}
		if len(rest) > 0 {
			fmt.Fprintf(stderr, "loopgate version: unexpected argument %q\n", rest[0])
			return exitUsage
		}
		fmt.Fprintf(stdout, "loopgate %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, helpText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "loopgate: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
}

const commandsText = `  loopgate serve [flags] APP...             run the edge
  loopgate check APP...                     validate configuration, print every problem, exit 0 or 2
  loopgate status [--admin ADDR] [--json]   show apps, processes and acceleration from a running serve
  loopgate recycle [VPATH...]               recycle the apps' processes, overlapped (all apps without VPATH)
  loopgate stop VPATH...                    stop an app: its processes stop, requests get 503
  loopgate start VPATH...                   start an app that was stopped
  loopgate upgrade [--admin ADDR]           replace a running serve with the binary on disk, no connection refused
  loopgate version
`

const statusFlagsHelp = `status flags:
  --admin ADDR     the admin endpoint of the running serve (default 127.0.0.1:9180)
  --json           print the /status JSON document instead of a table
`

const usageText = "usage:\n" + commandsText + "\nRun 'loopgate --help' for flags, signals and exit statuses.\n"

// appText says what an APP argument is.
const appText = `APP is a directory that holds web.config (the app's physical path), mounted
at /, or VPATH=DIR to mount it at a virtual path, e.g. /api=/srv/api. An
argument that names an existing directory is always taken as DIR. Requests
go to the app with the longest matching virtual path (/api matches /api and
/api/x, not /apix); the app sees ASPNETCORE_APPL_PATH=VPATH.
`

const signalsText = `Signals (serve):
  SIGTERM, SIGINT  drain gracefully: /healthz and /readyz turn 503 (and stay
                   so while requests are still served for --shutdown-delay),
                   listeners close, in-flight requests finish for up to
                   --drain-timeout, then every backend is shut down (the
                   shutdown request, then SIGTERM, then SIGKILL after its
                   shutdownTimeLimit); a second one stops at once
  SIGQUIT          stop at once: every backend process group is killed
  SIGHUP           re-read every web.config and the TLS certificates (apps
                   whose configuration did not change are untouched)
  SIGUSR1          reopen the log file (after logrotate moved it) and have
                   every stdout log (stdoutLogEnabled) continue in a new file
  SIGUSR2          binary upgrade, as loopgate upgrade: start the binary on
                   disk with the listening sockets; once it is ready, drain
                   and exit (if it fails, keep serving and log why)
Backends never outlive loopgate, even after SIGKILL.
`

const exitText = `Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on a usage or
configuration error. Configuration errors name the file, the line and the
attribute, e.g.
  /srv/app/web.config:7: startupTimeLimit="4000": out of range 0-3600
`

// helpText states the contract of DESIGN.md §1; a test keeps it in step
// with the flags actually defined.
const helpText = `loopgate hosts web apps the way the ASP.NET Core Module's out-of-process
hosting model does on IIS: it reads each app's web.config, starts the app on
the first request with ASPNETCORE_PORT and a pairing token, forwards HTTP to
it over loopback, restarts it when it crashes, serves app_offline.htm and
recycles it when web.config changes.

usage:
` + commandsText + `
` + appText + `
serve flags (--flag and -flag both work; flags may follow the APPs):
` + serveFlagsHelp + `
` + statusFlagsHelp + `
recycle, stop and start flags:
` + controlFlagsHelp + `
` + signalsText + `
` + exitText

// serveHelp is `loopgate serve --help`.
const serveHelp = `usage: loopgate serve [flags] APP...

Runs the edge: listens, starts each app's backend on its first request and
forwards to it, until a signal stops it. 'loopgate check APP...' validates
the same configuration without starting anything.

` + appText + `
serve flags (--flag and -flag both work; flags may follow the APPs):
` + serveFlagsHelp + `
` + signalsText + `
` + exitText
