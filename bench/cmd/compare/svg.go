// The chart (latest.svg): one bar panel per measured quantity, three to a
// line: the GET rows' throughput, latency and CPU, the other rows'
// charted columns, and the memory per idle connection and tunnel.

package main

import (
	"fmt"
	"html"
	"strings"
)

// panel is one bar chart: a value per target.
type panel struct {
	title  string
	format string
	bars   []bar
}

type bar struct {
	target string
	v      float64
}

var colors = map[string]string{
	"direct": "#9e9e9e", "loopgate": "#1f77b4", "loopgate-sockmap": "#17becf",
	"nginx": "#2ca02c", "haproxy": "#d62728", "haproxy-splice": "#ff9896",
}

// panels returns every panel of the report, in the order of its tables.
func (r report) panels() []panel {
	var out []panel
	for _, bd := range r.cfg.bodies {
		res, ok := r.results[bd.Name]
		if !ok {
			continue
		}
		for _, m := range []struct {
			title, format string
			val           func(summary) float64
			proxyOnly     bool
		}{
			{fmt.Sprintf("%s GET: requests/s @%d conns (higher is better)", bd.Name, r.cfg.conns), "%.0f", func(s summary) float64 { return s.rps }, false},
			{bd.Name + " GET: p50 latency µs @1 conn (lower is better)", "%.1f", func(s summary) float64 { return s.p50 }, false},
			{bd.Name + " GET: proxy CPU µs per request (lower is better)", "%.1f", func(s summary) float64 { return s.proxyCPU }, true},
		} {
			p := panel{title: m.title, format: m.format}
			for _, t := range r.targets {
				if m.proxyOnly && t == "direct" {
					continue
				}
				p.bars = append(p.bars, bar{t, m.val(summarize(res[t]))})
			}
			out = append(out, p)
		}
	}
	for _, t := range r.tables {
		out = append(out, t.panels()...)
	}
	for _, m := range []struct {
		title string
		v     map[string]float64
	}{
		{"memory: RSS bytes per idle keep-alive connection (lower is better)", r.idle},
		{"memory: RSS bytes per idle WebSocket tunnel (lower is better)", r.tunnels},
	} {
		if len(m.v) == 0 {
			continue
		}
		p := panel{title: m.title, format: "%.0f"}
		for _, t := range r.targets {
			if v, ok := m.v[t]; ok {
				p.bars = append(p.bars, bar{t, v})
			}
		}
		out = append(out, p)
	}
	return out
}

// svg draws the panels three to a line.
func (r report) svg() string {
	const (
		panelW, labelW, barH, gap, top, titleH, cols = 300, 120, 18, 6, 30, 40, 3
	)
	ps := r.panels()
	rows := 0
	for _, p := range ps {
		rows = max(rows, len(p.bars))
	}
	panelH := titleH + rows*(barH+gap) + 10
	lines := (len(ps) + cols - 1) / cols
	width := cols * (labelW + panelW + 20)
	height := top + lines*panelH + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">%s</text>`+"\n",
		html.EscapeString(fmt.Sprintf("loopgate vs nginx vs HAProxy, server side on one core (%s, Linux %s); medians of %d runs",
			r.machine.cpu, r.machine.kernel, r.cfg.reps)))
	for i, p := range ps {
		x0 := (i % cols) * (labelW + panelW + 20)
		y0 := top + (i/cols)*panelH
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", x0+10, y0+20, html.EscapeString(p.title))
		maxV := 0.0
		for _, br := range p.bars {
			maxV = max(maxV, br.v)
		}
		for j, br := range p.bars {
			y := y0 + titleH + j*(barH+gap)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x0+labelW, y+barH-5, html.EscapeString(br.target))
			w := 0.0
			if maxV > 0 {
				w = br.v / maxV * float64(panelW-70)
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0+labelW+6, y, w, barH, colors[br.target])
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(x0+labelW+10)+w, y+barH-5, fmt.Sprintf(p.format, br.v))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
