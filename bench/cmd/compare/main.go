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
// nginx and HAProxy are installed from Debian when missing (as root).
//
// Targets are measured interleaved, each repetition in a rotated order, and
// for each the median over the repetitions is reported: requests/s at
// saturation (32 connections, closed loop), p50/p90 latency at one
// connection (closed loop: the next request leaves when the answer is
// complete), and the proxy's CPU time per request at saturation
// (utime+stime from /proc/PID/stat over the run divided by the requests
// answered), each with its ratio to nginx.
//
// Usage:
//
//	go run ./bench/cmd/compare [-reps 3] [-duration 5s] [-out bench/results]
package main

import (
	"bytes"
	"encoding/json"
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

// loadgen is the load generator process: one run, the result as JSON on
// stdout.
func loadgen(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	addr := fs.String("addr", "", "host:port")
	target := fs.String("target", "/", "request target")
	want := fs.Int("want", 0, "expected body length in bytes")
	conns := fs.Int("conns", 1, "connections")
	d := fs.Duration("duration", 5*time.Second, "how long to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := harness.RunLoad(harness.LoadOptions{
		Addr: *addr, Request: harness.GET("bench.example", *target), WantBody: *want,
		Conns: *conns, Duration: *d,
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

type config struct {
	reps     int
	duration time.Duration
	warmup   time.Duration
	conns    int
	out      string
	bodies   []body
	targets  []string
	install  bool
}

type body struct {
	Name, Path string
	Size       int
}

var allBodies = map[string]body{"13B": {"13B", "/", 13}, "16KiB": {"16KiB", "/16k", 16 << 10}}

func run() error {
	var c config
	var bodies, targets string
	flag.IntVar(&c.reps, "reps", 3, "repetitions of every measurement (at least 3)")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "length of each measurement")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "load before each saturation run, not counted")
	flag.IntVar(&c.conns, "conns", 32, "connections at saturation")
	flag.StringVar(&c.out, "out", "bench/results", "directory for latest.md and latest.svg")
	flag.StringVar(&bodies, "bodies", "13B,16KiB", "response bodies: 13B, 16KiB")
	flag.StringVar(&targets, "targets", "direct,loopgate,loopgate-sockmap,nginx,haproxy", "rows to measure")
	flag.BoolVar(&c.install, "install", true, "install nginx and haproxy with apt-get when missing (root only)")
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
		if !slices.Contains([]string{"direct", "loopgate", "loopgate-sockmap", "nginx", "haproxy"}, t) {
			return fmt.Errorf("-targets: unknown target %q", t)
		}
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
	results, err := measure(c, ts, loadCPU)
	if err != nil {
		return err
	}
	idle, err := measureIdle(c, ts)
	if err != nil {
		return err
	}
	tunnels, err := measureTunnels(c, ts)
	if err != nil {
		return err
	}
	rep := report{cfg: c, machine: describeMachine(), results: results, targets: c.targets, idle: idle, tunnels: tunnels}
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
	return nil
}

// ensurePackages installs nginx and haproxy when a row needs them and they
// are missing.
func ensurePackages(c config) error {
	var missing []string
	for _, name := range []string{"nginx", "haproxy"} {
		if !slices.Contains(c.targets, name) {
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

// target is one row: where to send requests and whose CPU to count.
type target struct {
	name       string
	addr       string
	proxyPIDs  func() []int // nil for direct
	backendPID int
}

func startTargets(c config, bins harness.Binaries, tmp string, cpu int) (map[string]*target, func(), error) {
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	ts := map[string]*target{}
	be, err := harness.StartBackend(bins.Backend, "off", "", cpu)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, be.Stop)
	for _, name := range c.targets {
		t := &target{name: name, backendPID: be.PID()}
		switch name {
		case "direct":
			t.addr = be.Addr
		case "nginx", "haproxy":
			dir := filepath.Join(tmp, "conf-"+name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, stop, err
			}
			start := harness.StartNginx
			if name == "haproxy" {
				start = harness.StartHAProxy
			}
			p, err := start(dir, be.Addr, cpu)
			if err != nil {
				return nil, stop, err
			}
			stops = append(stops, p.Stop)
			t.addr, t.proxyPIDs = p.Addr, p.PIDs
		case "loopgate", "loopgate-sockmap":
			accel := "off"
			if name == "loopgate-sockmap" {
				accel = "on"
			}
			app := filepath.Join(tmp, "app-"+name)
			if err := harness.WriteApp(app, bins.Backend, "-pairing=off"); err != nil {
				return nil, stop, err
			}
			lg, err := harness.StartLoopgate(bins.Loopgate, app, accel, cpu)
			if err != nil {
				return nil, stop, err
			}
			stops = append(stops, lg.Stop)
			if err := harness.Warm(lg.Addr, harness.GET("bench.example", "/"), 13); err != nil {
				return nil, stop, fmt.Errorf("%w\n%s", err, lg.Log())
			}
			if t.backendPID, err = lg.BackendPID(); err != nil {
				return nil, stop, err
			}
			pid := lg.PID()
			t.addr, t.proxyPIDs = lg.Addr, func() []int { return []int{pid} }
		}
		if err := harness.Warm(t.addr, harness.GET("bench.example", "/"), 13); err != nil {
			return nil, stop, fmt.Errorf("%s: %w", name, err)
		}
		ts[name] = t
	}
	return ts, stop, nil
}

// sample is one repetition's numbers for one target and body.
type sample struct {
	rps, p50, p90, proxyCPU, backendCPU float64 // req/s, µs, µs, µs/req, µs/req
	satP99                              float64 // µs at saturation
	errors                              int64
}

// results[body][target] holds one sample per repetition.
type results map[string]map[string][]sample

func measure(c config, ts map[string]*target, loadCPU int) (results, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	res := results{}
	for _, b := range c.bodies {
		res[b.Name] = map[string][]sample{}
	}
	for rep := 0; rep < c.reps; rep++ {
		order := slices.Clone(c.targets)
		k := rep % len(order)
		order = append(order[k:], order[:k]...)
		for _, b := range c.bodies {
			for _, name := range order {
				t := ts[name]
				fmt.Fprintf(os.Stderr, "compare: rep %d/%d body=%s %s\n", rep+1, c.reps, b.Name, name)
				s, err := measureOne(self, c, t, b, loadCPU)
				if err != nil {
					return nil, fmt.Errorf("%s body=%s: %w", name, b.Name, err)
				}
				res[b.Name][name] = append(res[b.Name][name], s)
			}
		}
	}
	return res, nil
}

func measureOne(self string, c config, t *target, b body, loadCPU int) (sample, error) {
	var s sample
	load := func(conns int, d time.Duration) (harness.LoadResult, error) {
		cmd := exec.Command(self, "loadgen", "-addr", t.addr, "-target", b.Path,
			"-want", fmt.Sprint(b.Size), "-conns", fmt.Sprint(conns), "-duration", d.String())
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		var r harness.LoadResult
		if err := harness.StartPinned(cmd, loadCPU); err != nil {
			return r, err
		}
		if err := cmd.Wait(); err != nil {
			return r, fmt.Errorf("load generator: %w: %s", err, errb.String())
		}
		return r, json.Unmarshal(out.Bytes(), &r)
	}
	if _, err := load(c.conns, c.warmup); err != nil {
		return s, err
	}
	var pids []int
	if t.proxyPIDs != nil {
		pids = t.proxyPIDs()
	}
	p0, err := harness.TotalCPU(pids...)
	if err != nil {
		return s, err
	}
	b0, err := harness.CPUTime(t.backendPID)
	if err != nil {
		return s, err
	}
	sat, err := load(c.conns, c.duration)
	if err != nil {
		return s, err
	}
	p1, err := harness.TotalCPU(pids...)
	if err != nil {
		return s, err
	}
	b1, err := harness.CPUTime(t.backendPID)
	if err != nil {
		return s, err
	}
	lat, err := load(1, c.duration)
	if err != nil {
		return s, err
	}
	if sat.Requests == 0 || lat.Requests == 0 {
		return s, fmt.Errorf("no request answered: %s%s", sat.FirstError, lat.FirstError)
	}
	s.rps = sat.RPS()
	s.p50 = float64(lat.P50) / 1e3
	s.p90 = float64(lat.P90) / 1e3
	s.satP99 = float64(sat.P99) / 1e3
	s.proxyCPU = float64(p1-p0) / 1e3 / float64(sat.Requests)
	s.backendCPU = float64(b1-b0) / 1e3 / float64(sat.Requests)
	s.errors = sat.Errors + lat.Errors
	if s.errors > 0 {
		fmt.Fprintf(os.Stderr, "compare: %s: %d errors, first: %s%s\n", t.name, s.errors, sat.FirstError, lat.FirstError)
	}
	return s, nil
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
