package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// proxy is one of the measured proxies.
type proxy struct {
	name string
	addr string
	pids func() []int
}

// sample is one wrk run through a proxy: µs of CPU per request, req/s.
type sample struct{ user, sys, rps float64 }

// run starts the backend and the proxies on CPU 0, measures them
// interleaved with wrk on CPU 1, reps times, and prints the medians as
// ratios to nginx.
func run(reps int, d time.Duration) error {
	if !harness.CanPin() {
		return fmt.Errorf("needs CPUs 0 and 1 to pin the server side and wrk apart")
	}
	tmp, err := os.MkdirTemp("", "loopgate-floor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins, err := harness.Build(tmp)
	if err != nil {
		return err
	}
	be, err := harness.StartBackend(bins.Backend, "off", "", 0)
	if err != nil {
		return err
	}
	defer be.Stop()
	proxies, stop, err := startProxies(tmp, bins, be.Addr)
	defer stop()
	if err != nil {
		return err
	}
	got := map[string][]sample{}
	for rep := range reps {
		for i := range proxies {
			p := proxies[(i+rep)%len(proxies)] // a rotated order, as bench/cmd/compare
			s, err := measure(p, d)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			fmt.Fprintf(os.Stderr, "floor: rep %d %-10s %6.0f req/s, user %5.2f µs, kernel %5.2f µs per request\n", rep+1, p.name, s.rps, s.user, s.sys)
			got[p.name] = append(got[p.name], s)
		}
	}
	median := func(name string, f func(sample) float64) float64 {
		v := make([]float64, 0, len(got[name]))
		for _, s := range got[name] {
			v = append(v, f(s))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	user := func(s sample) float64 { return s.user }
	sys := func(s sample) float64 { return s.sys }
	total := func(s sample) float64 { return s.user + s.sys }
	rps := func(s sample) float64 { return s.rps }
	fmt.Printf("wrk -t1 -c32 -d%v, 13 B GET, medians of %d interleaved runs; ratios to nginx (µs per request in brackets)\n\n", d, reps)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "proxy\tuser space\tkernel\ttotal\treq/s\t")
	for _, p := range proxies {
		r := func(f func(sample) float64) float64 { return median(p.name, f) / median("nginx", f) }
		fmt.Fprintf(w, "%s\t%.2f (%.2f)\t%.2f (%.2f)\t%.2f (%.2f)\t%.2f\t\n", p.name,
			r(user), median(p.name, user), r(sys), median(p.name, sys), r(total), median(p.name, total), r(rps))
	}
	return w.Flush()
}

// startProxies starts nginx, loopgate and the floor proxies in front of
// backend, all on CPU 0.
func startProxies(tmp string, bins harness.Binaries, backend string) ([]proxy, func(), error) {
	var stops []func()
	stop := func() {
		for _, f := range slices.Backward(stops) {
			f()
		}
	}
	var ps []proxy
	dir := filepath.Join(tmp, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, stop, err
	}
	ng, err := harness.StartNginx(dir, backend, 0, harness.ProxyOptions{})
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, ng.Stop)
	ps = append(ps, proxy{"nginx", ng.Addr, ng.PIDs})

	app := filepath.Join(tmp, "app")
	if err := harness.WriteApp(app, bins.Backend, "-pairing=off"); err != nil {
		return nil, stop, err
	}
	lg, err := harness.StartLoopgate(bins.Loopgate, app, "off", 0)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, lg.Stop)
	lpid := lg.PID()
	ps = append(ps, proxy{"loopgate", lg.Addr, func() []int { return []int{lpid} }})

	self, err := os.Executable()
	if err != nil {
		return nil, stop, err
	}
	for _, v := range []struct{ name, sub, raw string }{
		{"fasthttp", "serve-fasthttp", ""},
		{"epoll", "serve-epoll", "0"},
		{"epoll-raw", "serve-epoll", "1"},
	} {
		port, err := harness.FreePort()
		if err != nil {
			return nil, stop, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(self, v.sub, addr, backend)
		cmd.Env = append(os.Environ(), "FLOOR_RAW_SYSCALLS="+v.raw)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := harness.StartPinned(cmd, 0); err != nil {
			return nil, stop, err
		}
		stops = append(stops, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if err := harness.WaitListening(addr, 10*time.Second); err != nil {
			return nil, stop, fmt.Errorf("%s: %w", v.name, err)
		}
		pid := cmd.Process.Pid
		ps = append(ps, proxy{v.name, addr, func() []int { return []int{pid} }})
	}
	for _, p := range ps {
		if err := harness.Warm(p.addr, harness.GET("bench.example", "/"), 13); err != nil {
			return nil, stop, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return ps, stop, nil
}

// measure runs wrk through p for d after a one-second run not counted,
// and returns p's CPU per request and the rate. A run with an error or a
// non-2xx answer fails: a floor that drops requests measures nothing.
func measure(p proxy, d time.Duration) (sample, error) {
	url := "http://" + p.addr + "/"
	if _, err := harness.RunWrk(1, url, 32, time.Second); err != nil {
		return sample{}, err
	}
	before, err := harness.SumCPUTimes(p.pids()...)
	if err != nil {
		return sample{}, err
	}
	r, err := harness.RunWrk(1, url, 32, d)
	if err != nil {
		return sample{}, err
	}
	after, err := harness.SumCPUTimes(p.pids()...)
	if err != nil {
		return sample{}, err
	}
	if r.Errors > 0 {
		return sample{}, fmt.Errorf("%d errors in %d requests", r.Errors, r.Requests)
	}
	cpu := after.Sub(before)
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(r.Requests) }
	return sample{user: per(cpu.User), sys: per(cpu.System), rps: r.RPS}, nil
}
