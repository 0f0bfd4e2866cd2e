// Command compare measures loopgate against nginx and HAProxy on this
// machine, the way ../../../shared/DESIGN.md §6 prescribes, and writes the
// result as a Markdown table and an SVG chart (`make bench-compare`).
//
// The server side (proxy and backend) is pinned to CPU 0 and the load
// generator, a separate process (this program re-executed as
// `compare loadgen`), to CPU 1. Every row proxies the same fasthttp backend
// binary run with -pairing=off, so no row pays for a token check the others
// do not; nginx and HAProxy are set up like loopgate: one worker, upstream
// keep-alive, no access log, X-Forwarded-For and X-Forwarded-Proto added.
// nginx, HAProxy and wrk are installed from Debian when missing (as root).
//
// Targets are measured interleaved, each repetition in a rotated order, and
// for each the median over the repetitions is reported with its ratio to
// nginx. The rows (-rows), each a table of latest.md:
//
//   - get: the Go load generator's GETs (get.go): requests/s at saturation
//     (32 connections, closed loop), p50/p90 latency at one connection, the
//     proxy's CPU per request (utime+stime from /proc/PID/stat);
//   - wrk: small GETs with wrk as the client, CPU in user space and kernel
//     apart (wrk.go); tls: the same over TLS 1.3 keep-alive;
//   - handshake: TLS 1.3 handshakes/s, full and resumed from tickets (tls.go);
//   - bodies: 1 MiB responses, 64 MiB downloads and uploads (bodies.go);
//   - coldstart: the first answer after the app listens, loopgate only
//     (coldstart.go);
//   - idle, tunnels: RSS per idle keep-alive connection and idle WebSocket
//     tunnel (idle.go).
//
// Usage:
//
//	go run ./bench/cmd/compare [-rows get,wrk,...] [-targets ...] [-reps 3] [-duration 3s] [-out bench/results]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
	"github.com/loopgate/loopgate/bpf"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		if err := loadgen(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "compare loadgen:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type config struct {
	reps     int
	duration time.Duration
	warmup   time.Duration
	conns    int
	out      string
	bodies   []body
	targets  []string
	rows     []string
	install  bool
	// idleConns and idleTunnels: how many idle keep-alive connections and
	// idle WebSocket tunnels each proxy holds at the end of those rows.
	idleConns, idleTunnels int
}

var (
	allTargets = []string{"direct", "loopgate", "loopgate-sockmap", "nginx", "haproxy", "haproxy-splice"}
	// allRows in the order they are measured: the idle rows, which read
	// the proxies' RSS, first, on proxies that have served nothing but
	// the warm-up: memory a load row left behind is given back (or
	// reused) while they count. After the large bodies they read 46 and
	// -1,698 bytes per idle connection for loopgate; after the GET rows,
	// 3,866 to 6,325 for loopgate and -2,956 for the same code, against
	// 1,444 to 2,578 measured first.
	allRows = []string{"idle", "tunnels", "get", "wrk", "tls", "handshake", "bodies", "coldstart"}
)

// rowTargets returns the targets of c that a row measures, of those it
// can (in c's order).
func (c config) rowTargets(can ...string) []string {
	var out []string
	for _, t := range c.targets {
		if slices.Contains(can, t) {
			out = append(out, t)
		}
	}
	return out
}

// proxies are the targets the idle rows measure.
var proxies = []string{"loopgate", "loopgate-sockmap", "nginx", "haproxy"}

type body struct {
	Name, Path string
	Size       int
}

var allBodies = map[string]body{"13B": {"13B", "/", 13}, "16KiB": {"16KiB", "/16k", 16 << 10}}

func run() error {
	var c config
	var bodies, targets, rows string
	flag.IntVar(&c.reps, "reps", 3, "repetitions of every measurement (at least 3)")
	flag.DurationVar(&c.duration, "duration", 3*time.Second, "length of each measurement")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "load before each saturation run, not counted")
	flag.IntVar(&c.conns, "conns", 32, "connections at saturation")
	flag.StringVar(&c.out, "out", "bench/results", "directory for latest.md and latest.svg")
	flag.StringVar(&bodies, "bodies", "13B,16KiB", "response bodies: 13B, 16KiB")
	flag.StringVar(&targets, "targets", strings.Join(allTargets, ","), "targets to measure (haproxy-splice: the bodies rows only)")
	flag.StringVar(&rows, "rows", strings.Join(allRows, ","), "rows to measure: "+strings.Join(allRows, ", "))
	flag.IntVar(&c.idleConns, "idle-conns", 3000, "idle keep-alive connections each proxy holds at the end of the idle row (two equal steps)")
	flag.IntVar(&c.idleTunnels, "idle-tunnels", 3000, "idle WebSocket tunnels each proxy holds at the end of the tunnels row (two equal steps; 2 descriptors each in the proxy)")
	flag.BoolVar(&c.install, "install", true, "install nginx, haproxy and wrk with apt-get when missing (root only)")
	flag.Parse()
	if c.reps < 3 {
		return fmt.Errorf("-reps=%d: at least 3 repetitions are needed for a median", c.reps)
	}
	for _, n := range strings.Split(bodies, ",") {
		b, ok := allBodies[n]
		if !ok {
			return fmt.Errorf("-bodies: unknown body %q (want 13B or 16KiB)", n)
		}
		c.bodies = append(c.bodies, b)
	}
	c.targets = strings.Split(targets, ",")
	for _, t := range c.targets {
		if !slices.Contains(allTargets, t) {
			return fmt.Errorf("-targets: unknown target %q (want some of %s)", t, strings.Join(allTargets, ", "))
		}
	}
	if err := checkHeldLimit("idle-conns", c.idleConns, 1); err != nil {
		return err
	}
	if err := checkHeldLimit("idle-tunnels", c.idleTunnels, 2); err != nil {
		return err
	}
	c.rows = strings.Split(rows, ",")
	for _, r := range c.rows {
		if !slices.Contains(allRows, r) {
			return fmt.Errorf("-rows: unknown row %q (want some of %s)", r, strings.Join(allRows, ", "))
		}
	}
	if !slices.Contains(c.rows, "bodies") {
		c.targets = slices.DeleteFunc(c.targets, func(t string) bool { return t == "haproxy-splice" })
	}
	if slices.Contains(c.targets, "loopgate-sockmap") {
		if err := bpf.Probe(); err != nil {
			fmt.Fprintf(os.Stderr, "compare: no loopgate-sockmap row: %v\n", err)
			c.targets = slices.DeleteFunc(c.targets, func(t string) bool { return t == "loopgate-sockmap" })
		}
	}
	if err := ensurePackages(c); err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "loopgate-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "compare: building loopgate and the backend")
	bins, err := harness.Build(tmp)
	if err != nil {
		return err
	}
	serverCPU, loadCPU := -1, -1
	if harness.CanPin() {
		serverCPU, loadCPU = 0, 1
		if _, err := harness.PinSelf(1); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(os.Stderr, "compare: CPUs 0 and 1 are not both available: not pinning (results are less meaningful)")
	}

	ts, stop, err := startTargets(c, bins, tmp, serverCPU)
	defer stop()
	if err != nil {
		return err
	}
	rep := report{cfg: c, machine: describeMachine(), targets: c.rowTargets("direct", "loopgate", "loopgate-sockmap", "nginx", "haproxy")}
	measureRows(c, &rep, ts, bins, tmp, serverCPU, loadCPU)
	md := rep.markdown()
	fmt.Print(md)
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "latest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.out, "latest.svg"), []byte(rep.svg()), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "compare: wrote %s and %s\n", filepath.Join(c.out, "latest.md"), filepath.Join(c.out, "latest.svg"))
	if len(rep.failures) > 0 {
		return fmt.Errorf("%d measurement(s) failed (listed in latest.md):\n%s", len(rep.failures), strings.Join(rep.failures, "\n"))
	}
	return nil
}

// measureRows measures c's rows into rep, in the order of allRows. A row
// that fails does not stop the others: its error goes into rep.failures.
func measureRows(c config, rep *report, ts map[string]*target, bins harness.Binaries, tmp string, serverCPU, loadCPU int) {
	for _, row := range allRows {
		if !slices.Contains(c.rows, row) {
			continue
		}
		var t *table
		var tables []*table
		var err error
		switch row {
		case "get":
			rep.results, err = measureGET(c, ts, loadCPU)
		case "wrk", "tls":
			t, err = measureWrk(c, ts, row == "tls", loadCPU)
		case "handshake":
			t, err = measureHandshakes(c, ts, loadCPU)
		case "bodies":
			tables, err = measureBodies(c, ts, loadCPU)
		case "coldstart":
			t, err = measureColdStart(c, bins, tmp, serverCPU)
		case "idle":
			var failed []string
			rep.idle, rep.idleNotes, failed = measureIdle(c, ts)
			rep.failures = append(rep.failures, failed...)
		case "tunnels":
			var failed []string
			rep.tunnels, rep.tunnelNotes, failed = measureTunnels(c, ts)
			rep.failures = append(rep.failures, failed...)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: row %s: %v\n", row, err)
			rep.failures = append(rep.failures, fmt.Sprintf("row %s: %v", row, err))
		}
		if t != nil {
			tables = append(tables, t)
		}
		rep.tables = append(rep.tables, tables...)
	}
}

// ensurePackages installs nginx, haproxy and wrk when a row needs them and
// they are missing.
func ensurePackages(c config) error {
	var missing []string
	for _, name := range []string{"nginx", "haproxy", "wrk"} {
		if name == "wrk" && !slices.Contains(c.rows, "wrk") && !slices.Contains(c.rows, "tls") ||
			name != "wrk" && len(c.rowTargets(name, name+"-splice")) == 0 {
			continue
		}
		if _, err := exec.LookPath(name); err == nil {
			continue
		}
		if _, err := os.Stat("/usr/sbin/" + name); err == nil {
			continue
		}
		missing = append(missing, name)
	}
	if len(missing) == 0 {
		return nil
	}
	if !c.install || os.Geteuid() != 0 {
		return fmt.Errorf("%s missing: run `apt-get install %s` as root, or leave them out with -targets", strings.Join(missing, " and "), strings.Join(missing, " "))
	}
	fmt.Fprintf(os.Stderr, "compare: installing %s from Debian\n", strings.Join(missing, " "))
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	install := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if err := apt(install...); err != nil {
		if err := apt("update", "-qq"); err != nil {
			return err
		}
		return apt(install...)
	}
	return nil
}

// machine describes where the numbers were taken.
type machine struct {
	cpu, kernel, goVersion, loopgate, nginx, haproxy string
	cores                                            int
}

func describeMachine() machine {
	m := machine{cores: runtime.NumCPU(), goVersion: runtime.Version(),
		nginx: harness.Version("nginx"), haproxy: harness.Version("haproxy")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty").Output(); err == nil {
		m.loopgate = strings.TrimSpace(string(out))
	} else {
		m.loopgate = "unknown"
	}
	return m
}
