// Package metrics defines loopgate's Prometheus metrics and keeps them
// cheap: per-request counters and histograms are resolved once per app at
// start-up so that recording a request allocates nothing, and everything
// the supervisor already counts (starts, crashes, restarts, rapid-fail
// blocks, app_offline, config reloads, processes) and the front server's
// gauges are read when Prometheus scrapes, not duplicated.
//
// Labels are bounded by construction: app (the virtual path of a mounted
// app, or "none"), method class, status class, result, state and verdict.
// Never a PID, a port or a request path.
package metrics
