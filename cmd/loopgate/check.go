package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

const checkUsage = `usage: loopgate check APP...

Validates each app's web.config the way serve would load it and prints every
problem as file:line: attr="value": rule (warnings marked "warning:") on
stderr. Exit status 2 if any app has an error, else 0 with one summary line
per app on stdout. APP is DIR (mounted at /) or VPATH=DIR.
`

// appArg is one APP argument of serve or check (DESIGN.md §1).
type appArg struct {
	arg   string // as given, for messages
	vpath string // cleaned by configload.CleanVirtualPath
	dir   string
}

// parseAppArgs reads APP arguments: DIR mounted at "/", or VPATH=DIR. An
// argument naming an existing directory is always DIR, so a directory whose
// name holds "=" still works; "/=DIR" forces any DIR to "/". Every bad
// argument and every virtual path used twice is reported, not only the
// first.
func parseAppArgs(args []string) ([]appArg, []error) {
	var apps []appArg
	var errs []error
	for _, arg := range args {
		a := appArg{arg: arg, vpath: "/", dir: arg}
		if fi, err := os.Stat(arg); (err != nil || !fi.IsDir()) && strings.Contains(arg, "=") {
			vpath, dir, _ := strings.Cut(arg, "=")
			clean, err := configload.CleanVirtualPath(vpath)
			if err != nil {
				errs = append(errs, fmt.Errorf("APP %q: %w", arg, err))
				continue
			}
			if dir == "" {
				errs = append(errs, fmt.Errorf("APP %q: no directory after %q", arg, vpath+"="))
				continue
			}
			a.vpath, a.dir = clean, dir
		}
		dup := false
		for _, prev := range apps {
			// Requests are routed case-insensitively, as IIS does.
			if strings.EqualFold(prev.vpath, a.vpath) {
				same := ""
				if prev.vpath != a.vpath {
					same = " (virtual paths match in any case)"
				}
				errs = append(errs, fmt.Errorf("APP %q: virtual path %s is already used by APP %q%s", arg, a.vpath, prev.arg, same))
				dup = true
				break
			}
		}
		if !dup {
			apps = append(apps, a)
		}
	}
	return apps, errs
}

// runCheck implements `loopgate check APP...` and returns the exit status:
// 0 when every app is valid, 2 on a usage or configuration error (DESIGN.md
// §1). environ is loopgate's environment (for %VAR% expansion and the
// ANCM_* knobs), as serve would see it.
func runCheck(args, environ []string, stdout, stderr io.Writer) int {
	var appArgs []string
	for i, a := range args {
		if a == "--" {
			appArgs = append(appArgs, args[i+1:]...)
			break
		}
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			fmt.Fprint(stdout, checkUsage)
			return 0
		case strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(stderr, "loopgate check: unknown flag %q\n\n%s", a, checkUsage)
			return 2
		}
		appArgs = append(appArgs, a)
	}
	if len(appArgs) == 0 {
		fmt.Fprintf(stderr, "loopgate check: no APP given\n\n%s", checkUsage)
		return 2
	}

	apps, argErrs := parseAppArgs(appArgs)
	for _, err := range argErrs {
		fmt.Fprintf(stderr, "loopgate check: %v\n", err)
	}
	specs, loaded := loadApps(apps, environ, zerolog.Nop())
	for _, err := range loaded.errs {
		fmt.Fprintf(stderr, "loopgate check: %v\n", err)
	}
	for _, p := range loaded.problems {
		fmt.Fprintln(stderr, p.String())
	}
	if errorCount := len(argErrs) + loaded.errors; errorCount > 0 {
		fmt.Fprintf(stderr, "loopgate check: failed: %s, %s\n", plural(errorCount, "error"), plural(loaded.warnings(), "warning"))
		return 2
	}
	for _, s := range specs {
		warnings := 0
		for _, p := range loaded.problems {
			if p.app == s.VirtualPath && p.Warning {
				warnings++
			}
		}
		fmt.Fprintln(stdout, summary(s, warnings))
	}
	return 0
}

// appProblem is a Problem with the virtual path of the app it is about.
type appProblem struct {
	app string
	configload.Problem
}

// loaded is what loadApps found.
type loaded struct {
	// problems are every web.config's errors and warnings, then each
	// processPath's, in APP order.
	problems []appProblem
	// errs are APPs whose web.config could not be read at all.
	errs []error
	// errors counts errs and the problems that are not warnings.
	errors int
}

// loadApps reads every app's configuration and checks it the way serve
// starts it and check reports it: one validation for both commands, so
// that whatever check passes, serve accepts. Beyond configload's rules
// (and parseAppArgs' virtual paths) it looks for each processPath as a
// start would: one that cannot be found is an error when it is an
// absolute path outside the app directory, and a warning when it may yet
// appear before the first request (relative to the app directory, inside
// it, or looked up on PATH); and it looks up userName and groupName (a
// user or group that does not exist, or loopgate not being root, is an
// error). The specs are returned only for apps without an error.
func loadApps(apps []appArg, environ []string, log zerolog.Logger) ([]*configload.AppSpec, loaded) {
	var specs []*configload.AppSpec
	var l loaded
	for _, a := range apps {
		spec, err := configload.Load(a.dir, configload.Options{VirtualPath: a.vpath, Environ: environ, Logger: log})
		var invalid *configload.Error
		switch {
		case errors.As(err, &invalid):
			for _, p := range invalid.Problems {
				l.add(a.vpath, p)
			}
			continue
		case err != nil:
			l.errs = append(l.errs, fmt.Errorf("APP %q: %w", a.arg, err))
			l.errors++
			continue
		}
		for _, w := range spec.Warnings {
			l.add(a.vpath, w)
		}
		if _, err := supervisor.ResolveIdentity(spec); err != nil {
			var ie *supervisor.IdentityError
			p := configload.Problem{File: spec.ConfigFile, Rule: err.Error()}
			if errors.As(err, &ie) {
				p.Attr, p.Value, p.Rule = ie.Setting, ie.Value, ie.Rule
			}
			l.add(a.vpath, p)
			continue
		}
		if p, ok := processPathProblem(spec, backendEnviron(environ)); ok {
			l.add(a.vpath, p)
			if !p.Warning {
				continue
			}
		}
		specs = append(specs, spec)
	}
	return specs, l
}

func (l *loaded) warnings() int {
	n := 0
	for _, p := range l.problems {
		if p.Warning {
			n++
		}
	}
	return n
}

func (l *loaded) add(app string, p configload.Problem) {
	l.problems = append(l.problems, appProblem{app, p})
	if !p.Warning {
		l.errors++
	}
}

// processPathProblem looks for spec's program as a start would and says
// what is wrong with it, if anything.
func processPathProblem(spec *configload.AppSpec, environ []string) (configload.Problem, bool) {
	p := spec.ProcessPathSource
	path, err := supervisor.ResolveProcessPath(spec, environ)
	mayAppear := !filepath.IsAbs(spec.ProcessPath) || strings.HasPrefix(spec.ProcessPath, spec.Dir+"/")
	later := "; the app fails to start unless it is there by the first request"
	switch {
	case err != nil:
		p.Rule = "not found"
		switch {
		case filepath.IsAbs(spec.ProcessPath):
		case strings.Contains(spec.ProcessPath, "/"):
			p.Rule = "not found: no " + filepath.Join(spec.Dir, spec.ProcessPath)
		default:
			p.Rule = "not found in " + spec.Dir + " or on PATH"
		}
		if spec.ProcessPathFallback != "" {
			p.Rule += fmt.Sprintf(" (nor %s, its Linux name)", filepath.Base(spec.ProcessPathFallback))
		}
	default:
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm()&0o111 != 0 {
			return p, false
		}
		p.Rule = fmt.Sprintf("%s is not executable (mode %04o): chmod +x it, or name its interpreter in processPath and the file in arguments", path, fi.Mode().Perm())
	}
	if mayAppear {
		p.Warning = true
		p.Rule += later
	}
	return p, true
}

// summary is one line saying what serve would run for an app:
// `/api -> /srv/api: dotnet ./MyApp.dll (processes=1, hostingModel=inprocess, warnings=1)`.
func summary(s *configload.AppSpec, warnings int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s: %s", s.VirtualPath, s.Dir, shellWord(s.ProcessPath))
	for _, a := range s.Arguments {
		b.WriteByte(' ')
		b.WriteString(shellWord(a))
	}
	fmt.Fprintf(&b, " (processes=%d, hostingModel=%s, warnings=%d)", s.ProcessesPerApplication, s.HostingModel, warnings)
	return b.String()
}

// shellWord quotes an argument only when it would otherwise be ambiguous.
func shellWord(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"'\\") {
		return strconv.Quote(s)
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
