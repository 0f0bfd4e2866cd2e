// Package admin is loopgate's operator endpoint (--admin, default
// 127.0.0.1:9180): /healthz for load balancers, /readyz and /livez for
// orchestrators' readiness and liveness probes, /status as JSON for people
// and scripts, /metrics for Prometheus.
//
// It owns the health state: 503 until the front listeners are serving, 200
// while they are, and 503 again from the moment a drain (or the
// --shutdown-delay before it) begins, so a load balancer stops sending new
// connections before loopgate stops accepting them. /healthz reports that
// state alone; /readyz also fails while an app holds readiness back (the
// caller's Ready function: an app in crashloop); /livez reports only that
// loopgate answers. It serves over net/http: this is the slow path, not the
// hot one.
package admin
