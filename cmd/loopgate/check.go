package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/loopgate/loopgate/configload"
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
			if prev.vpath == a.vpath {
				errs = append(errs, fmt.Errorf("APP %q: virtual path %s is already used by APP %q", arg, a.vpath, prev.arg))
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
	errorCount, warningCount := len(argErrs), 0
	for _, err := range argErrs {
		fmt.Fprintf(stderr, "loopgate check: %v\n", err)
	}
	var summaries []string
	for _, app := range apps {
		spec, err := configload.Load(app.dir, configload.Options{VirtualPath: app.vpath, Environ: environ})
		var invalid *configload.Error
		switch {
		case errors.As(err, &invalid):
			for _, p := range invalid.Problems {
				fmt.Fprintln(stderr, p.String())
				if p.Warning {
					warningCount++
				} else {
					errorCount++
				}
			}
		case err != nil:
			fmt.Fprintf(stderr, "loopgate check: APP %q: %v\n", app.arg, err)
			errorCount++
		default:
			for _, w := range spec.Warnings {
				fmt.Fprintln(stderr, w.String())
			}
			warningCount += len(spec.Warnings)
			summaries = append(summaries, summary(spec))
		}
	}
	if errorCount > 0 {
		fmt.Fprintf(stderr, "loopgate check: failed: %s, %s\n", plural(errorCount, "error"), plural(warningCount, "warning"))
		return 2
	}
	for _, s := range summaries {
		fmt.Fprintln(stdout, s)
	}
	return 0
}

// summary is one line saying what serve would run for an app:
// `/api -> /srv/api: dotnet ./MyApp.dll (processes=1, hostingModel=inprocess, warnings=1)`.
func summary(s *configload.AppSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s: %s", s.VirtualPath, s.Dir, shellWord(s.ProcessPath))
	for _, a := range s.Arguments {
		b.WriteByte(' ')
		b.WriteString(shellWord(a))
	}
	fmt.Fprintf(&b, " (processes=%d, hostingModel=%s, warnings=%d)", s.ProcessesPerApplication, s.HostingModel, len(s.Warnings))
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
