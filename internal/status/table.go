package status

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable renders s for people: a header with version, uptime, listeners
// and acceleration, then one table of apps and one of processes.
func WriteTable(w io.Writer, s Snapshot) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	state := "serving"
	if s.Draining {
		state = "draining"
	}
	fmt.Fprintf(tw, "loopgate %s, up %s, %s\n", s.Version, Duration(s.UptimeSeconds), state)
	if s.LastUpgradeError != "" {
		fmt.Fprintf(tw, "last upgrade failed: %s\n", s.LastUpgradeError)
	}
	var ls []string
	for _, l := range s.Listeners {
		scheme := "http"
		if l.TLS {
			scheme = "https"
		}
		ls = append(ls, scheme+"://"+l.Addr)
	}
	if len(ls) == 0 {
		ls = []string{"none"}
	}
	fmt.Fprintf(tw, "listening: %s\n", strings.Join(ls, ", "))
	a := s.Acceleration
	switch {
	case a.Active:
		fmt.Fprintf(tw, "acceleration: eBPF sockmap (%s), %d messages redirected, %d passed, %d connections fell back to TCP%s\n", a.Mode, a.Redirected, a.Passed, a.Fallbacks, accelScope(a))
	case a.Reason != "":
		fmt.Fprintf(tw, "acceleration: off (%s): %s\n", a.Mode, a.Reason)
	default:
		fmt.Fprintf(tw, "acceleration: off (%s)\n", a.Mode)
	}

	fmt.Fprintln(tw)
	// CPU and MEMORY only where loopgate reads them from cgroups.
	usage := false
	for _, app := range s.Apps {
		usage = usage || app.Usage != nil
	}
	header := "APP\tSTATE\tDIR\tSTARTS\tCRASHES\tRESTARTS\tRECYCLES\tRAPID-FAIL BLOCKS"
	if usage {
		header += "\tCPU\tMEMORY"
	}
	fmt.Fprintln(tw, header)
	for _, app := range s.Apps {
		st := app.State
		if app.Offline && st != "offline" {
			st += " (offline)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d", app.VirtualPath, st, app.Dir,
			app.Starts, app.Crashes, app.Restarts, app.Recycles, app.RapidFailBlocks)
		switch {
		case !usage:
		case app.Usage == nil:
			fmt.Fprint(tw, "\t-\t-")
		default:
			fmt.Fprintf(tw, "\t%.1fs\t%.1f MiB", app.Usage.CPUSeconds, float64(app.Usage.MemoryBytes)/(1<<20))
		}
		fmt.Fprintln(tw)
	}
	if len(s.Apps) == 0 {
		fmt.Fprintln(tw, "(no apps)")
	}

	var procs int
	for _, app := range s.Apps {
		procs += len(app.Processes)
	}
	if procs > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "APP\tSLOT\tPID\tPORT\tSTATE\tUPTIME\tRESTARTS\tREQUESTS\tLAST EXIT")
		for _, app := range s.Apps {
			for _, p := range app.Processes {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", app.VirtualPath, p.Slot,
					dash(p.PID), dash(p.Port), p.State, durationOrDash(p), p.Restarts, p.Requests, lastExit(app, p))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Errors are long (file:line: attr: rule, or a start failure with the
	// backend's output); keep them out of the table so its columns stay
	// readable.
	for _, app := range s.Apps {
		if app.NotReady != "" {
			if _, err := fmt.Fprintf(w, "\n%s: not ready: %s\n", app.VirtualPath, app.NotReady); err != nil {
				return err
			}
		}
		var by []string
		for _, reason := range slices.Sorted(maps.Keys(app.RecyclesByReason)) {
			if n := app.RecyclesByReason[reason]; n > 0 {
				by = append(by, fmt.Sprintf("%s %d", reason, n))
			}
		}
		if len(by) > 0 {
			if _, err := fmt.Fprintf(w, "\n%s: recycles by reason: %s\n", app.VirtualPath, strings.Join(by, ", ")); err != nil {
				return err
			}
		}
		if app.ConfigError != "" {
			if _, err := fmt.Fprintf(w, "\n%s: configuration error (previous configuration still running):\n  %s\n", app.VirtualPath, app.ConfigError); err != nil {
				return err
			}
		}
		if app.LastStartError != "" {
			if _, err := fmt.Fprintf(w, "\n%s: last start failure:\n  %s\n", app.VirtualPath, strings.ReplaceAll(app.LastStartError, "\n", "\n  ")); err != nil {
				return err
			}
		}
	}
	return nil
}

// Duration renders seconds the way uptime reads: "45s", "12m5s", "3h4m",
// "2d5h".
func Duration(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second)).Round(time.Second)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}

func durationOrDash(p Process) string {
	if p.Started.IsZero() {
		return "-"
	}
	return Duration(p.UptimeSeconds)
}

func dash(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// lastExit is the LAST EXIT column: how the slot's last process ended, or,
// for a slot without a process after a failed start, the start failure
// (its first line, shortened; the whole of it follows the table).
func lastExit(app App, p Process) string {
	if p.PID == 0 && app.LastStartError != "" {
		msg, _, _ := strings.Cut(app.LastStartError, "\n")
		if r := []rune(msg); len(r) > 60 {
			msg = string(r[:59])
			if i := strings.LastIndexByte(msg, ' '); i > 30 {
				msg = msg[:i] // at a word boundary
			}
			msg += "…"
		}
		return "start failed: " + msg
	}
	return orDash(p.LastExit)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// accelScope names the cgroup whose processes' connections are
// accelerated, and why it is the mount's root when it is.
func accelScope(a Accel) string {
	switch {
	case a.Cgroup == "":
		return ""
	case a.CgroupNote != "":
		return fmt.Sprintf("; processes in %s (%s)", a.Cgroup, a.CgroupNote)
	default:
		return "; processes in " + a.Cgroup
	}
}
