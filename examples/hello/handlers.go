package main

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/pairing"
)

// maxEcho is the largest body /echo answers; it holds the body in memory.
const maxEcho = 64 << 20

// app holds what the handlers report besides the request. Safe for
// concurrent use (read-only after construction).
type app struct {
	start  time.Time
	cfg    pairing.Config
	hosted bool
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", a.page)
	mux.HandleFunc("GET /info", a.infoJSON)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("GET /stream", stream)
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("GET /headers", headers)
	return mux
}

// view is the request as the app sees it.
type view struct {
	PID            int    `json:"pid"`
	Hosted         bool   `json:"hosted"`
	ApplPath       string `json:"appl_path"`
	Remote         string `json:"remote"`
	Scheme         string `json:"scheme"`
	PathBase       string `json:"path_base"`
	Path           string `json:"path"`
	Host           string `json:"host"`
	XForwardedFor  string `json:"x_forwarded_for"`
	XOriginalFor   string `json:"x_original_for"`
	XOriginalProto string `json:"x_original_proto"`
	UptimeMS       int64  `json:"uptime_ms"`
	Uptime         string `json:"-"`
}

func (a *app) view(r *http.Request) view {
	up := time.Since(a.start)
	return view{
		PID:            os.Getpid(),
		Hosted:         a.hosted,
		ApplPath:       a.cfg.ApplPath,
		Remote:         r.RemoteAddr,
		Scheme:         pairing.Scheme(r),
		PathBase:       pairing.PathBase(r),
		Path:           r.URL.Path,
		Host:           r.Host,
		XForwardedFor:  strings.Join(r.Header.Values("X-Forwarded-For"), ", "),
		XOriginalFor:   r.Header.Get("X-Original-For"),
		XOriginalProto: r.Header.Get("X-Original-Proto"),
		UptimeMS:       up.Milliseconds(),
		Uptime:         up.Round(time.Millisecond).String(),
	}
}

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hello from pid {{.PID}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 44rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
th { width: 12rem; font-weight: 600; }
td { font-family: ui-monospace, monospace; word-break: break-all; }
.none { color: #999; }
</style>
</head>
<body>
<h1>hello</h1>
<p>{{if .Hosted}}Hosted behind loopgate (or IIS) at <code>{{.ApplPath}}</code>.{{else}}Running on its own: not hosted.{{end}}
This is the request as the app sees it.</p>
<table>
<tr><th>client address</th><td>{{.Remote}}</td></tr>
<tr><th>scheme</th><td>{{.Scheme}}</td></tr>
<tr><th>path base</th><td>{{with .PathBase}}{{.}}{{else}}<span class="none">(none)</span>{{end}}</td></tr>
<tr><th>path</th><td>{{.Path}}</td></tr>
<tr><th>Host</th><td>{{.Host}}</td></tr>
<tr><th>X-Forwarded-For</th><td>{{with .XForwardedFor}}{{.}}{{else}}<span class="none">(none)</span>{{end}}</td></tr>
<tr><th>X-Original-For</th><td>{{with .XOriginalFor}}{{.}}{{else}}<span class="none">(none)</span>{{end}}</td></tr>
<tr><th>X-Original-Proto</th><td>{{with .XOriginalProto}}{{.}}{{else}}<span class="none">(none)</span>{{end}}</td></tr>
<tr><th>PID</th><td>{{.PID}}</td></tr>
<tr><th>uptime</th><td>{{.Uptime}}</td></tr>
</table>
</body>
</html>
`))

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTmpl.Execute(w, a.view(r)) //nolint:errcheck // a failed write means the client left
}

func (a *app) infoJSON(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.view(r))
}

func headers(w http.ResponseWriter, r *http.Request) {
	h := r.Header.Clone()
	h["Host"] = []string{r.Host}
	writeJSON(w, h)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // a failed write means the client left
}

// intParam reads query parameter name as an integer in [lo, hi]; def when
// absent. The error says which parameter and why.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("query parameter %s=%q: want an integer from %d to %d", name, s, lo, hi)
	}
	return n, nil
}

func slow(w http.ResponseWriter, r *http.Request) {
	ms, err := intParam(r, "ms", 1000, 0, 600000)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		fmt.Fprintf(w, "slept %d ms\n", ms)
	case <-r.Context().Done(): // the client left
	}
}

func stream(w http.ResponseWriter, r *http.Request) {
	chunks, err := intParam(r, "chunks", 10, 1, 100000)
	if err == nil {
		var ms int
		if ms, err = intParam(r, "ms", 100, 0, 60000); err == nil {
			streamChunks(w, r, chunks, time.Duration(ms)*time.Millisecond)
			return
		}
	}
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func streamChunks(w http.ResponseWriter, r *http.Request, chunks int, gap time.Duration) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff") // browsers show chunks as they come
	rc := http.NewResponseController(w)
	for i := 1; i <= chunks; i++ {
		if i > 1 && gap > 0 {
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "chunk %d\n", i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxEcho+1))
	if err != nil {
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxEcho {
		http.Error(w, fmt.Sprintf("request body over %d bytes; /echo holds it in memory", maxEcho), http.StatusRequestEntityTooLarge)
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Echo-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body) //nolint:errcheck // a failed write means the client left
}
