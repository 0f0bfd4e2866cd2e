package admin

import (
	"bytes"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/internal/status"
)

// The status page at the admin endpoint's "/": what /status says, for
// people, with each app's request rate over the last minutes (after
// HAProxy's stats page and passenger-status). One HTML document, its CSS
// and SVG inline: no script, no external asset, so it works offline and
// under a strict Content-Security-Policy. It refreshes itself every 5 s and
// is laid out for a phone first.

// pageView is what the template renders.
type pageView struct {
	Version, Uptime, State string
	Draining               bool
	Listeners              []string
	Accel                  string
	Apps                   []appView
	Generated              string
}

type appView struct {
	VirtualPath, Dir, State string
	Offline                 bool
	RPS, InFlight           string
	Memory, CPU             string // "" when not known
	Starts, Crashes         uint64
	Restarts, Recycles      uint64
	RapidFailBlocks         uint64
	ConfigError             string
	LastStartError          string
	Processes               []procView
	Chart                   chartView
}

type procView struct {
	Slot                               int
	PID, Port, State, Uptime, LastExit string
	Restarts, Requests                 uint64
}

// chartView is an SVG sparkline of requests per second.
type chartView struct {
	Points  string // polyline points in a 300×60 box
	Area    string // the polygon under it
	Max     string // the top of the scale, e.g. "12/s"
	Minutes int    // the span it covers
	Empty   bool   // fewer than two samples yet
}

const (
	chartW, chartH = 300.0, 60.0
)

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	v := pageView{Generated: now.UTC().Format("2006-01-02 15:04:05 UTC")}
	var snap status.Snapshot
	if s.o.Snapshot != nil {
		snap = s.o.Snapshot()
	}
	v.Version = snap.Version
	v.Uptime = status.Duration(snap.UptimeSeconds)
	v.State, v.Draining = "serving", snap.Draining
	switch {
	case snap.Draining:
		v.State = "draining"
	case s.Health() == Starting:
		v.State = "starting"
	}
	for _, l := range snap.Listeners {
		scheme := "http"
		if l.TLS {
			scheme = "https"
		}
		v.Listeners = append(v.Listeners, scheme+"://"+l.Addr)
	}
	a := snap.Acceleration
	switch {
	case a.Active:
		v.Accel = fmt.Sprintf("eBPF sockmap (%s): %s messages redirected, %s passed, %d fell back to TCP (%d of them released to plain TCP)",
			a.Mode, count(a.Redirected), count(a.Passed), a.Fallbacks, a.Released)
		if a.Cgroup != "" {
			v.Accel += "; processes in " + a.Cgroup
		}
	case a.Reason != "":
		v.Accel = "off (" + a.Mode + "): " + a.Reason
	default:
		v.Accel = "off (" + a.Mode + ")"
	}
	cur := s.hist.read(now)
	for _, app := range snap.Apps {
		rates, last := s.hist.rates(app.Name)
		rps := 0.0
		if !last.at.IsZero() && now.Sub(last.at) >= time.Second {
			rps = rate(last, cur, app.Name)
		} else if len(rates) > 0 {
			rps = rates[len(rates)-1]
		}
		av := appView{
			VirtualPath: app.VirtualPath, Dir: app.Dir, State: app.State, Offline: app.Offline,
			RPS: perSecond(rps), InFlight: strconv.FormatFloat(cur.apps[app.Name].inFlight, 'f', 0, 64),
			Starts: app.Starts, Crashes: app.Crashes, Restarts: app.Restarts, Recycles: app.Recycles,
			RapidFailBlocks: app.RapidFailBlocks, ConfigError: app.ConfigError, LastStartError: app.LastStartError,
			Chart: chart(rates, s.sampleEvery),
		}
		if app.Usage != nil {
			av.Memory = bytesIEC(app.Usage.MemoryBytes)
			av.CPU = strconv.FormatFloat(app.Usage.CPUSeconds, 'f', 1, 64) + " s"
		}
		for _, p := range app.Processes {
			pv := procView{Slot: p.Slot, PID: dashInt(p.PID), Port: dashInt(p.Port), State: p.State,
				Uptime: "-", LastExit: p.LastExit, Restarts: p.Restarts, Requests: p.Requests}
			if !p.Started.IsZero() {
				pv.Uptime = status.Duration(p.UptimeSeconds)
			}
			if pv.LastExit == "" {
				pv.LastExit = "-"
			}
			av.Processes = append(av.Processes, pv)
		}
		v.Apps = append(v.Apps, av)
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, v); err != nil {
		s.o.Logger.Error().Err(err).Msg("rendering the status page")
		http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing external: the policy says so, and a browser enforces it.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(b.Bytes())
}

// chart draws rates (oldest first) as a sparkline scaled to its maximum.
func chart(rates []float64, every time.Duration) chartView {
	c := chartView{Minutes: int(math.Round(float64(historySamples) * every.Minutes()))}
	if len(rates) < 2 {
		c.Empty = true
		return c
	}
	top := 0.0
	for _, r := range rates {
		top = math.Max(top, r)
	}
	scale := niceCeil(top)
	c.Max = perSecond(scale)
	step := chartW / float64(historySamples-2)
	x0 := chartW - step*float64(len(rates)-1) // the newest sample at the right edge
	var pts strings.Builder
	for i, r := range rates {
		y := chartH - 2 - (chartH-4)*r/scale
		fmt.Fprintf(&pts, "%.1f,%.1f ", x0+step*float64(i), y)
	}
	c.Points = strings.TrimSpace(pts.String())
	c.Area = fmt.Sprintf("%.1f,%.1f %s %.1f,%.1f", x0, chartH, c.Points, chartW, chartH)
	return c
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func perSecond(v float64) string {
	if v == math.Trunc(v) || v >= 10 {
		return strconv.FormatFloat(v, 'f', 0, 64) + "/s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
}

func count(n uint64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + "G"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 1e4:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 0, 64) + "k"
	}
	return strconv.FormatUint(n, 10)
}

func bytesIEC(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if f < 1024 || u == "GiB" {
			switch {
			case u == "B":
				return strconv.FormatInt(n, 10) + " B"
			case f >= 100:
				return strconv.FormatFloat(f, 'f', 0, 64) + " " + u
			}
			return strconv.FormatFloat(f, 'f', 1, 64) + " " + u
		}
		f /= 1024
	}
	return ""
}

func dashInt(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>loopgate {{.State}}</title>
<style>
:root { --fg: #1d2329; --muted: #5d6873; --line: #dde3e8; --bg: #f4f6f8; --card: #fff;
  --ok: #1f7a44; --warn: #a15c00; --bad: #b3261e; --idle: #5d6873; --accent: #2a6bb5; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 12px; }
header h1 { font-size: 1.3em; margin: 0 0 2px; }
header p { margin: 2px 0; color: var(--muted); overflow-wrap: anywhere; }
main { display: grid; gap: 12px; grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr)); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px; min-width: 0; }
h2 { font-size: 1.15em; margin: 0; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; overflow-wrap: anywhere; }
.dir { color: var(--muted); margin: 2px 0 8px; font-size: .9em; overflow-wrap: anywhere; }
.badge { font-size: .75em; font-weight: 600; padding: 1px 8px; border-radius: 10px; color: #fff; background: var(--idle); }
.badge.ready { background: var(--ok); } .badge.starting, .badge.stopping, .badge.offline { background: var(--warn); }
.badge.crashloop { background: var(--bad); } .serving { color: var(--ok); } .draining, .starting { color: var(--warn); }
.nums { display: grid; grid-template-columns: repeat(auto-fill, minmax(100px, 1fr)); gap: 6px; margin: 0 0 8px; }
.nums div { background: var(--bg); border-radius: 6px; padding: 4px 8px; }
.nums dt { font-size: .75em; color: var(--muted); } .nums dd { margin: 0; font-weight: 600; }
svg { display: block; width: 100%; height: 60px; background: var(--bg); border-radius: 6px; }
.axis { display: flex; justify-content: space-between; font-size: .75em; color: var(--muted); margin: 2px 0 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9em; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: .85em; }
.error { margin: 8px 0 0; padding: 6px 8px; border-radius: 6px; background: #fdecea; color: var(--bad);
  font: .85em/1.4 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
.error b { font-family: system-ui, sans-serif; }
footer { color: var(--muted); font-size: .85em; }
a { color: var(--accent); }
</style>
</head>
<body>
<header>
<h1>loopgate {{.Version}}</h1>
<p>up {{.Uptime}} · <span class="{{.State}}">{{.State}}</span></p>
<p>listening: {{range $i, $l := .Listeners}}{{if $i}}, {{end}}{{$l}}{{else}}none{{end}}</p>
<p>acceleration: {{.Accel}}</p>
</header>
<main>
{{range .Apps}}<section id="app{{.VirtualPath}}">
<h2>{{.VirtualPath}} <span class="badge {{.State}}">{{.State}}</span>{{if and .Offline (ne .State "offline")}} <span class="badge offline">app_offline</span>{{end}}</h2>
<p class="dir">{{.Dir}}</p>
<dl class="nums">
<div><dt>requests</dt><dd>{{.RPS}}</dd></div>
<div><dt>in flight</dt><dd>{{.InFlight}}</dd></div>
{{if .Memory}}<div><dt>memory</dt><dd>{{.Memory}}</dd></div>
<div><dt>CPU</dt><dd>{{.CPU}}</dd></div>
{{end}}<div><dt>starts</dt><dd>{{.Starts}}</dd></div>
<div><dt>crashes</dt><dd>{{.Crashes}}</dd></div>
<div><dt>restarts</dt><dd>{{.Restarts}}</dd></div>
<div><dt>recycles</dt><dd>{{.Recycles}}</dd></div>
<div><dt>rapid-fail blocks</dt><dd>{{.RapidFailBlocks}}</dd></div>
</dl>
<svg viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="requests per second, last {{.Chart.Minutes}} minutes">{{if not .Chart.Empty}}<polygon points="{{.Chart.Area}}" fill="#2a6bb5" fill-opacity=".15"/><polyline points="{{.Chart.Points}}" fill="none" stroke="#2a6bb5" stroke-width="1.5" vector-effect="non-scaling-stroke"/>{{end}}</svg>
<p class="axis"><span>{{.Chart.Minutes}} min ago</span><span>{{if .Chart.Empty}}collecting…{{else}}max {{.Chart.Max}}{{end}}</span><span>now</span></p>
<div class="scroll"><table>
<tr><th>slot</th><th>PID</th><th>port</th><th>state</th><th>uptime</th><th>restarts</th><th>requests</th><th>last exit</th></tr>
{{range .Processes}}<tr><td>{{.Slot}}</td><td>{{.PID}}</td><td>{{.Port}}</td><td>{{.State}}</td><td>{{.Uptime}}</td><td>{{.Restarts}}</td><td>{{.Requests}}</td><td>{{.LastExit}}</td></tr>
{{end}}</table></div>
{{if .ConfigError}}<p class="error"><b>configuration error</b> (the previous configuration keeps running):
{{.ConfigError}}</p>{{end}}
{{if .LastStartError}}<p class="error"><b>last start failure:</b>
{{.LastStartError}}</p>{{end}}
</section>
{{else}}<section><p>No apps.</p></section>
{{end}}</main>
<footer>{{.Generated}} · refreshes every 5 s · <a href="/status">/status</a> (JSON) · <a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> <a href="/readyz">/readyz</a> <a href="/livez">/livez</a></footer>
</body>
</html>
`))
