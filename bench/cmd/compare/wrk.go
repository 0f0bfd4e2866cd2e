// Small GETs with wrk as the client, over plain TCP and over TLS 1.3:
// requests/s and the proxy's CPU per request, user space and kernel apart.

package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// wrkMetrics are the columns of both wrk tables.
func wrkMetrics(what string) []metric {
	return []metric{
		{key: "rps", head: "req/s", format: "%.0f", chart: what + ": requests/s (higher is better)"},
		{key: "cpu", head: "proxy CPU µs/req", format: "%.1f", chart: what + ": proxy CPU µs per request (lower is better)"},
		{key: "user", head: "user-space µs/req", format: "%.1f"},
		{key: "sys", head: "kernel µs/req", format: "%.1f"},
		{key: "errors", head: "errors", format: "%.0f", noRatio: true},
	}
}

// measureWrk is the small-GET row with wrk over plain TCP (tls false) or
// TLS 1.3 keep-alive (tls true).
func measureWrk(c config, ts map[string]*target, tls bool, loadCPU int) (*table, error) {
	t := &table{title: "13 B GET, wrk, " + strconv.Itoa(c.conns) + " connections", ref: "nginx",
		metrics: wrkMetrics("13 B GET (wrk)"), targets: c.rowTargets("direct", "loopgate", "loopgate-sockmap", "nginx", "haproxy")}
	scheme := "http"
	if tls {
		t.title = "13 B GET over TLS 1.3 keep-alive, wrk, " + strconv.Itoa(c.conns) + " connections"
		t.metrics = wrkMetrics("TLS 1.3 keep-alive (wrk)")
		t.targets = c.rowTargets("loopgate", "loopgate-sockmap", "nginx", "haproxy")
		scheme = "https"
	}
	t.method = fmt.Sprintf("`wrk -t1 -c%d -d%v %s://ADDR/` on CPU 1 after a %v run not counted; "+
		"CPU from utime (user space) and stime (kernel) of the proxy's processes over the run, divided by the requests wrk counted.",
		c.conns, c.duration, scheme, c.warmup)
	if tls {
		t.method += " The certificate is ECDSA P-256; wrk (OpenSSL 3) negotiates TLS 1.3 with X25519, once per connection."
	}
	err := measureTable(c, ts, t, func(name string) (map[string]float64, error) {
		tg := ts[name]
		addr := tg.addr
		if tls {
			addr = tg.tlsAddr
		}
		url := scheme + "://" + addr + "/"
		// The warm-up's numbers do not count, nor does a warm-up that got
		// no answer: a neighbour holding CPU 0 for a second did that once.
		if _, err := harness.RunWrk(loadCPU, url, c.conns, c.warmup); err != nil && !errors.Is(err, harness.ErrNoAnswer) {
			return nil, err
		}
		var r harness.WrkResult
		cpu, err := cpuDuring(tg.pids(), func() (err error) {
			r, err = harness.RunWrk(loadCPU, url, c.conns, c.duration)
			return err
		})
		if err != nil {
			return nil, err
		}
		v := map[string]float64{"rps": r.RPS, "errors": float64(r.Errors)}
		if tg.proxyPIDs != nil {
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(r.Requests) }
			v["cpu"], v["user"], v["sys"] = per(cpu.Total()), per(cpu.User), per(cpu.System)
		}
		return v, nil
	})
	return t, err
}
