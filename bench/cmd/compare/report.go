package main

import (
	"fmt"
	"html"
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
	fmt.Fprintf(&b, "- Method: server side (proxy and backend) pinned to CPU 0, load generator (a separate Go process) to CPU 1; "+
		"every row proxies the same fasthttp backend (bench/internal/backend -pairing=off); "+
		"targets interleaved in a rotated order, %d repetitions, medians shown; "+
		"saturation: %d keep-alive connections for %v after %v of warm-up; latency: 1 connection, closed loop, for %v; "+
		"CPU: utime+stime from /proc/PID/stat over the saturation run divided by the requests answered (nginx: master and worker).\n",
		r.cfg.reps, r.cfg.conns, r.cfg.duration, r.cfg.warmup, r.cfg.duration)
	fmt.Fprintf(&b, "- Proxies: one worker/thread each, upstream keep-alive, no access log, X-Forwarded-For and X-Forwarded-Proto added. "+
		"loopgate runs with `--access-log=false`; `loopgate-sockmap` is `--accel on` (eBPF sockmap between loopgate and the backend).\n")
	for _, bd := range r.cfg.bodies {
		res := r.results[bd.Name]
		ref := summarize(res["nginx"])
		fmt.Fprintf(&b, "\n## GET, %s response body\n\n", bd.Name)
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
	if len(r.idle) > 0 {
		fmt.Fprintf(&b, "\n## Idle keep-alive connections\n\n%d connections to each proxy, one request each, held %v; then %d more, held %v: "+
			"the growth of the proxy's RSS (all its processes, VmRSS) over the second step, per connection; a count, not a time, so the machine's load does not change it.\n\n",
			idleStep, idleHold, idleStep, idleHold)
		fmt.Fprintf(&b, "| target | RSS per idle connection, bytes | × nginx |\n|---|---:|---:|\n")
		for _, t := range r.targets {
			if v, ok := r.idle[t]; ok {
				fmt.Fprintf(&b, "| %s | %.0f | %s |\n", t, v, ratio(v, r.idle["nginx"]))
			}
		}
	}
	if len(r.tunnels) > 0 {
		fmt.Fprintf(&b, "\n## Idle WebSocket tunnels\n\nThe same with WebSocket tunnels to the backend's /ws echo, one message each: %d, then %d more, "+
			"each step held %v; RSS growth per tunnel over the second step.\n\n", idleStep, idleStep, idleHold)
		fmt.Fprintf(&b, "| target | RSS per idle tunnel, bytes | × nginx |\n|---|---:|---:|\n")
		for _, t := range r.targets {
			if v, ok := r.tunnels[t]; ok {
				fmt.Fprintf(&b, "| %s | %.0f | %s |\n", t, v, ratio(v, r.tunnels["nginx"]))
			}
		}
	}
	fmt.Fprintf(&b, "\n## Every repetition\n\nreq/s @%d conns / p99 µs @%d conns / p50 µs @1 conn / proxy CPU µs per request / errors, in measurement order.\n\n", r.cfg.conns, r.cfg.conns)
	for _, bd := range r.cfg.bodies {
		for _, t := range r.targets {
			fmt.Fprintf(&b, "- %s %s:", bd.Name, t)
			for _, s := range r.results[bd.Name][t] {
				fmt.Fprintf(&b, " %.0f/%.0f/%.1f/%.1f/%d;", s.rps, s.satP99, s.p50, s.proxyCPU, s.errors)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

var colors = map[string]string{
	"direct": "#9e9e9e", "loopgate": "#1f77b4", "loopgate-sockmap": "#17becf",
	"nginx": "#2ca02c", "haproxy": "#d62728",
}

// svg draws, for each body, three bar panels: requests/s at saturation,
// p50 latency at one connection and proxy CPU per request.
func (r report) svg() string {
	const (
		panelW, labelW, barH, gap, top, titleH = 300, 120, 18, 6, 30, 40
	)
	rows := len(r.targets)
	panelH := titleH + rows*(barH+gap) + 10
	width := 3 * (labelW + panelW + 20)
	height := top + len(r.cfg.bodies)*panelH + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n",
		html.EscapeString(fmt.Sprintf("loopgate vs nginx vs HAProxy, server side on one core (%s, Linux %s); medians of %d runs",
			r.machine.cpu, r.machine.kernel, r.cfg.reps)))
	metrics := []struct {
		title string
		val   func(summary) float64
		unit  string
	}{
		{fmt.Sprintf("requests/s @%d conns (higher is better)", r.cfg.conns), func(s summary) float64 { return s.rps }, "%.0f"},
		{"p50 latency µs @1 conn (lower is better)", func(s summary) float64 { return s.p50 }, "%.1f"},
		{"proxy CPU µs per request (lower is better)", func(s summary) float64 { return s.proxyCPU }, "%.1f"},
	}
	for bi, bd := range r.cfg.bodies {
		y0 := top + bi*panelH
		for mi, met := range metrics {
			x0 := mi * (labelW + panelW + 20)
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0+10, y0+20,
				html.EscapeString(bd.Name+" body: "+met.title))
			maxV := 0.0
			for _, t := range r.targets {
				maxV = max(maxV, met.val(summarize(r.results[bd.Name][t])))
			}
			for ti, t := range r.targets {
				v := met.val(summarize(r.results[bd.Name][t]))
				y := y0 + titleH + ti*(barH+gap)
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x0+labelW, y+barH-5, html.EscapeString(t))
				if mi == 2 && t == "direct" {
					fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#666">no proxy</text>`+"\n", x0+labelW+6, y+barH-5)
					continue
				}
				w := 0.0
				if maxV > 0 {
					w = v / maxV * float64(panelW-70)
				}
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0+labelW+6, y, w, barH, colors[t])
				fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(x0+labelW+10)+w, y+barH-5, fmt.Sprintf(met.unit, v))
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
