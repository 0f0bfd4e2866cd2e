package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

type report struct {
	cfg     config
	machine machine
	results results
	targets []string
	idle    map[string]float64 // bytes of RSS per idle keep-alive connection, by proxy target
	tunnels map[string]float64 // bytes of RSS per idle WebSocket tunnel, by proxy target
	tables  []*table           // the other rows
	// idleNotes and tunnelNotes say which proxies the idle rows did not
	// measure, or failed to;
	// failures lists every failed measurement.
	idleNotes, tunnelNotes, failures []string
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// summary is the median over repetitions of one target's samples.
type summary struct {
	rps, p50, p90, proxyCPU, backendCPU float64
	errors                              int64
	rpsSpread                           float64 // (max-min)/median of req/s
}

func summarize(ss []sample) summary {
	col := func(f func(sample) float64) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = f(s)
		}
		return out
	}
	var sum summary
	rps := col(func(s sample) float64 { return s.rps })
	sum.rps = median(rps)
	if sum.rps > 0 {
		sum.rpsSpread = (slices.Max(rps) - slices.Min(rps)) / sum.rps
	}
	sum.p50 = median(col(func(s sample) float64 { return s.p50 }))
	sum.p90 = median(col(func(s sample) float64 { return s.p90 }))
	sum.proxyCPU = median(col(func(s sample) float64 { return s.proxyCPU }))
	sum.backendCPU = median(col(func(s sample) float64 { return s.backendCPU }))
	for _, s := range ss {
		sum.errors += s.errors
	}
	return sum
}

func ratio(v, ref float64) string {
	if ref == 0 || v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v/ref)
}

func (r report) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "# loopgate, nginx and HAProxy on one core\n\n")
	fmt.Fprintf(&b, "Written by `make bench-compare` (bench/cmd/compare) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s, %d cores, Linux %s\n", m.cpu, m.cores, m.kernel)
	fmt.Fprintf(&b, "- Software: loopgate %s (%s), %s, %s\n", m.loopgate, m.goVersion, m.nginx, m.haproxy)
	fmt.Fprintf(&b, "- Method: server side (proxy and backend) pinned to CPU 0, load generator (a separate process: the Go one or wrk) to CPU 1; "+
		"every row proxies the same fasthttp backend (bench/internal/backend -pairing=off); "+
		"targets interleaved in a rotated order, %d repetitions, medians shown; "+
		"CPU: utime+stime from /proc/PID/stat of the proxy's processes (nginx and HAProxy: master and worker) over the measured run.\n",
		r.cfg.reps)
	fmt.Fprintf(&b, "- Proxies: one worker/thread each, upstream keep-alive, no access log, X-Forwarded-For and X-Forwarded-Proto added. "+
		"loopgate runs with `--access-log=false`; `loopgate-sockmap` is `--accel on` (eBPF sockmap between loopgate and the backend).\n")
	for _, f := range r.failures {
		fmt.Fprintf(&b, "- Failed: %s\n", strings.ReplaceAll(f, "\n", "; "))
	}
	for _, bd := range r.cfg.bodies {
		res, ok := r.results[bd.Name]
		if !ok {
			continue
		}
		ref := summarize(res["nginx"])
		fmt.Fprintf(&b, "\n## GET, %s response body\n\n", bd.Name)
		fmt.Fprintf(&b, "The Go load generator: saturation with %d keep-alive connections for %v after %v of warm-up; latency: 1 connection, closed loop, for %v; "+
			"CPU over the saturation run divided by the requests answered.\n\n", r.cfg.conns, r.cfg.duration, r.cfg.warmup, r.cfg.duration)
		fmt.Fprintf(&b, "| target | req/s @%d conns | × nginx | spread | p50 µs @1 conn | × nginx | p90 µs @1 conn | × nginx | proxy CPU µs/req | × nginx | backend CPU µs/req | errors |\n", r.cfg.conns)
		fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range r.targets {
			s := summarize(res[t])
			cpu := "–"
			if t != "direct" {
				cpu = fmt.Sprintf("%.1f", s.proxyCPU)
			}
			cpuRatio := "–"
			if t != "direct" {
				cpuRatio = ratio(s.proxyCPU, ref.proxyCPU)
			}
			fmt.Fprintf(&b, "| %s | %.0f | %s | %.0f %% | %.1f | %s | %.1f | %s | %s | %s | %.1f | %d |\n",
				t, s.rps, ratio(s.rps, ref.rps), 100*s.rpsSpread, s.p50, ratio(s.p50, ref.p50), s.p90, ratio(s.p90, ref.p90),
				cpu, cpuRatio, s.backendCPU, s.errors)
		}
	}
	for _, t := range r.tables {
		t.markdown(&b)
	}
	if len(r.idle)+len(r.idleNotes) > 0 {
		fmt.Fprintf(&b, "\n## Idle keep-alive connections\n\n%d connections to each proxy, one request each, held %v; then %d more, held %v: "+
			"the growth of the proxy's RSS (all its processes, VmRSS) over the second step, per connection; a count, not a time, so the machine's load does not change it.\n\n",
			r.cfg.idleConns/2, idleHold, r.cfg.idleConns/2, idleHold)
		fmt.Fprintf(&b, "| target | RSS per idle connection, bytes | × nginx |\n|---|---:|---:|\n")
		for _, t := range r.targets {
			if v, ok := r.idle[t]; ok {
				fmt.Fprintf(&b, "| %s | %.0f | %s |\n", t, v, ratio(v, r.idle["nginx"]))
			}
		}
		for _, n := range r.idleNotes {
			fmt.Fprintf(&b, "\n%s\n", n)
		}
	}
	if len(r.tunnels)+len(r.tunnelNotes) > 0 {
		fmt.Fprintf(&b, "\n## Idle WebSocket tunnels\n\nThe same with WebSocket tunnels to the backend's /ws echo, one message each: %d, then %d more, "+
			"each step held %v; RSS growth per tunnel over the second step.\n\n", r.cfg.idleTunnels/2, r.cfg.idleTunnels/2, idleHold)
		fmt.Fprintf(&b, "| target | RSS per idle tunnel, bytes | × nginx |\n|---|---:|---:|\n")
		for _, t := range r.targets {
			if v, ok := r.tunnels[t]; ok {
				fmt.Fprintf(&b, "| %s | %.0f | %s |\n", t, v, ratio(v, r.tunnels["nginx"]))
			}
		}
		for _, n := range r.tunnelNotes {
			fmt.Fprintf(&b, "\n%s\n", n)
		}
	}
	fmt.Fprintf(&b, "\n## Every repetition\n\nGET rows: req/s @%d conns / p99 µs @%d conns / p50 µs @1 conn / proxy CPU µs per request / errors, in measurement order.\n\n", r.cfg.conns, r.cfg.conns)
	for _, bd := range r.cfg.bodies {
		if _, ok := r.results[bd.Name]; !ok {
			continue
		}
		for _, t := range r.targets {
			fmt.Fprintf(&b, "- %s %s:", bd.Name, t)
			for _, s := range r.results[bd.Name][t] {
				fmt.Fprintf(&b, " %.0f/%.0f/%.1f/%.1f/%d;", s.rps, s.satP99, s.p50, s.proxyCPU, s.errors)
			}
			b.WriteString("\n")
		}
	}
	for _, t := range r.tables {
		t.repetitions(&b)
	}
	return b.String()
}
