// Apps and routing: the App and Backend interfaces the forwarder needs
// (FromSupervisor adapts the supervisor), the mounted routes and the
// longest-virtual-path match, with each route's cached answers.

package fastpath

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// App is what the forwarder needs from a hosted app. *supervisor.App
// satisfies it through FromSupervisor; tests use fakes. Implementations must
// be safe for concurrent use.
type App interface {
	// Name is a bounded label for metrics (the virtual path).
	Name() string
	// VirtualPath is where the app is mounted: "/" or "/api". It must not
	// change for the App's life.
	VirtualPath() string
	// Spec is the configuration in force; it may change between calls.
	Spec() *configload.AppSpec
	// Acquire returns a ready backend (Ready) or says why there is none.
	// With Ready the caller must call Backend.Release exactly once.
	Acquire(ctx context.Context) (Backend, supervisor.Outcome)
	// OfflinePage is the app_offline.htm content, valid after Offline.
	OfflinePage() []byte
}

// Backend is one ready backend process, as handed out by App.Acquire.
type Backend interface {
	// Addr is "127.0.0.1:<port>".
	Addr() string
	// Token is the pairing token the process was started with.
	Token() string
	PID() int
	// Upstream is what Config.NewUpstream (or Server.NewUpstream) made for
	// this process.
	Upstream() supervisor.Upstream
	// Release ends the request Acquire began, counted as served.
	Release()
	// ReleaseUnused ends it without counting it: the request never got an
	// answer from this process and is retried or answered by loopgate.
	ReleaseUnused()
	// Unreachable reports that a connect to Addr failed.
	Unreachable()
	// AwaitExit waits up to d for the process to exit and says how it
	// ended (supervisor.ExitNone if it still runs): the retry rule does not
	// send a request on to another process when its own ended by its own
	// hand.
	AwaitExit(d time.Duration) supervisor.ExitCause
}

// route is one mounted app with its per-app cached answers.
type route struct {
	app  App
	name string
	// prefix is the virtual path without its trailing slash ("" for "/").
	prefix string
	// startupPage caches the 502.5 page for the spec's
	// AdditionalErrorPageLink and output settings, so the page is built
	// once, not per request.
	startupPage atomic.Pointer[startupPage]
	// timeout502_3 caches the 502.3 page naming the spec's requestTimeout.
	timeout502_3 atomic.Pointer[timeoutPage]
	// inflight counts the app's requests from routing to finish.
	inflight atomic.Int64
	// queue counts those waiting for a backend connection (queueLength).
	queue appQueue
	// ups are the upstreams (processes) this app's requests have used,
	// for AppLoad; retired ones are forgotten there once drained.
	upsMu sync.Mutex
	ups   []*upstream
}

type timeoutPage struct {
	d    time.Duration
	body []byte
}

// timeoutPage returns the 502.3 page for requestTimeout d expiring.
func (r *route) timeoutPage(d time.Duration) []byte {
	if p := r.timeout502_3.Load(); p != nil && p.d == d {
		return p.body
	}
	p := &timeoutPage{d: d, body: page502_3Timeout(d)}
	r.timeout502_3.Store(p)
	return p.body
}

type startupPage struct {
	link   string
	output appOutput
	body   []byte
}

// page502_5 returns the 502.5 body for spec, the spec in force.
func (r *route) page502_5(spec *configload.AppSpec) []byte {
	link, output := spec.AdditionalErrorPageLink, outputOf(spec)
	if p := r.startupPage.Load(); p != nil && p.link == link && p.output == output {
		return p.body
	}
	p := &startupPage{link: link, output: output, body: render502_5(link, output)}
	r.startupPage.Store(p)
	return p.body
}

// router maps request paths to apps by the longest virtual path, on segment
// boundaries, comparing ASCII case-insensitively as IIS does. It is immutable
// after newRouter and safe for concurrent use.
type router struct {
	routes []*route // longest prefix first
}

func newRouter(apps []App) (*router, error) {
	r := &router{}
	seen := map[string]bool{}
	for _, a := range apps {
		vp := a.VirtualPath()
		if vp == "" || vp[0] != '/' {
			return nil, fmt.Errorf("%w: app %q: virtual path must start with /", ErrConfig, vp)
		}
		prefix := strings.TrimSuffix(vp, "/")
		key := strings.ToLower(prefix)
		if seen[key] {
			return nil, fmt.Errorf("%w: two apps mounted at %q", ErrConfig, vp)
		}
		seen[key] = true
		r.routes = append(r.routes, &route{app: a, name: a.Name(), prefix: prefix})
	}
	sort.SliceStable(r.routes, func(i, j int) bool { return len(r.routes[i].prefix) > len(r.routes[j].prefix) })
	return r, nil
}

// match returns the app for a request target, or nil.
func (r *router) match(target []byte) *route {
	path := targetPath(target)
	for _, rt := range r.routes {
		p := rt.prefix
		if len(path) < len(p) || !equalFoldASCII(path[:len(p)], p) {
			continue
		}
		if len(path) == len(p) || path[len(p)] == '/' {
			return rt
		}
	}
	return nil
}

// targetPath returns the path of a request target: origin-form up to '?',
// the path of an absolute-form target, and "/" for "*" and authority-form.
func targetPath(t []byte) []byte {
	if _, p, _ := splitTarget(t); p != nil {
		return p
	}
	return slash
}

var slash = []byte("/")

func indexString(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return i
		}
	}
	return -1
}

// equalFoldASCII reports whether b and s are equal under ASCII case folding.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// FromSupervisor adapts a supervisor app to App. The adapter adds nothing
// per request: Acquire passes the *supervisor.Process through as the
// Backend.
func FromSupervisor(a *supervisor.App) App { return supervisorApp{a} }

type supervisorApp struct{ *supervisor.App }

func (a supervisorApp) Acquire(ctx context.Context) (Backend, supervisor.Outcome) {
	p, o := a.App.Acquire(ctx)
	if p == nil {
		return nil, o
	}
	return p, o
}

var _ Backend = (*supervisor.Process)(nil)
