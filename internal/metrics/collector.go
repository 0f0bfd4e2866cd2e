package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// The supervisor's own counters and the acceleration state, read from a
// status snapshot at scrape time.
var (
	descStarts = prometheus.NewDesc("loopgate_backend_starts_total",
		"Backend processes started, by app.", []string{"app"}, nil)
	descCrashes = prometheus.NewDesc("loopgate_backend_crashes_total",
		"Backend processes that exited without being asked to, by app.", []string{"app"}, nil)
	descRestarts = prometheus.NewDesc("loopgate_backend_restarts_total",
		"Backend processes started again after a crash, by app.", []string{"app"}, nil)
	descStartFailures = prometheus.NewDesc("loopgate_backend_start_failures_total",
		"Backend starts that failed (the process exited or did not listen within startupTimeLimit), recycles' and new releases' included, by app.", []string{"app"}, nil)
	descRapidFail = prometheus.NewDesc("loopgate_rapid_fail_blocks_total",
		"Times an app hit its rapidFailsPerMinute limit and answered 502.5 instead of starting a backend.", []string{"app"}, nil)
	descRecycles = prometheus.NewDesc("loopgate_app_recycles_total",
		"Recycles of an app's backends, by app and reason: config (web.config changed; once per app), time, requests, memory, schedule (periodicRestart*), ping (answered no ping for pingResponseTime), manual (loopgate recycle); once per process replaced.", []string{"app", "reason"}, nil)
	descReloads = prometheus.NewDesc("loopgate_config_reloads_total",
		"web.config reads after start-up (SIGHUP or file change), by app and result (ok or failed).", []string{"app", "result"}, nil)
	descConfigError = prometheus.NewDesc("loopgate_app_config_error",
		"1 while an app's web.config is broken and its previous configuration keeps running.", []string{"app"}, nil)
	descOffline = prometheus.NewDesc("loopgate_app_offline",
		"1 while the app's app_offline.htm is present.", []string{"app"}, nil)
	descAppMemory = prometheus.NewDesc("loopgate_app_memory_bytes",
		"Memory used now by the app's backend processes (cgroup memory.current, or the sum of their RSS where the memory controller is not enabled), by app; absent without cgroup containment.", []string{"app"}, nil)
	descAppCPU = prometheus.NewDesc("loopgate_app_cpu_seconds_total",
		"User and system CPU time of every backend process the app has run since loopgate started, by app; absent without cgroup containment.", []string{"app"}, nil)
	descProcesses = prometheus.NewDesc("loopgate_backend_processes",
		"Backend process slots, by app and state.", []string{"app", "state"}, nil)
	descInFlight = prometheus.NewDesc("loopgate_requests_in_flight",
		"Requests being forwarded now, WebSocket tunnels included.", nil, nil)
	descAppInFlight = prometheus.NewDesc("loopgate_app_requests_in_flight",
		"Requests routed to the app and not yet answered (waiting for a backend, forwarded or tunnelled), by app.", []string{"app"}, nil)
	descAppQueued = prometheus.NewDesc("loopgate_app_requests_queued",
		"Requests routed to the app that hold no backend connection (h2c: stream) yet: waiting for a backend to start or for a free connection (--backend-max-conns) or stream, by app. With loopgate_app_requests_in_flight, the concurrency signal for autoscaling.", []string{"app"}, nil)
	descUpstreamConns = prometheus.NewDesc("loopgate_upstream_connections",
		"Keep-alive connections open from loopgate to the app's backend processes, by app and state (busy: carrying a request or WebSocket tunnel; idle: pooled).", []string{"app", "state"}, nil)
	descClientConns = prometheus.NewDesc("loopgate_client_connections",
		"Client connections open now, over all listeners.", nil, nil)
	descSockmap = prometheus.NewDesc("loopgate_sockmap_messages_total",
		"Loopback messages seen by the eBPF sk_msg program, by verdict: redirect (socket to socket) or pass (left to TCP).", []string{"verdict"}, nil)
	descSockmapFallbacks = prometheus.NewDesc("loopgate_sockmap_fallbacks_total",
		"Accelerated connections sent back to plain TCP because their receiver fell more than 4 MiB behind (a slow client).", nil, nil)
	descSockmapReleased = prometheus.NewDesc("loopgate_sockmap_released_total",
		"Of those, backend connections carrying a large response body whose backend end left the sockmap for plain TCP (cheaper than the sockmap's TCP path).", nil, nil)
	descAccel = prometheus.NewDesc("loopgate_acceleration_active",
		"1 when the eBPF sockmap acceleration is attached.", nil, nil)
	descDraining = prometheus.NewDesc("loopgate_draining",
		"1 once a graceful drain (SIGTERM/SIGINT) has begun.", nil, nil)
	descBuild = prometheus.NewDesc("loopgate_build_info",
		"Always 1; the version label says which loopgate runs.", []string{"version"}, nil)
)

// processStates are the states reported by loopgate_backend_processes; each
// is exported for every app (0 when no slot is in it) so dashboards see
// stable series.
var processStates = [...]string{"idle", "starting", "ready", "crashloop", "offline", "stopping", "stopped"}

// snapshotCollector turns a status snapshot into constant metrics at scrape
// time, so the supervisor's counters have a single source of truth.
type snapshotCollector struct{ o Options }

var _ prometheus.Collector = (*snapshotCollector)(nil)

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStarts, descStartFailures, descCrashes, descRestarts, descRapidFail, descRecycles,
		descReloads, descConfigError, descOffline, descAppMemory, descAppCPU, descProcesses, descInFlight, descAppInFlight, descAppQueued, descUpstreamConns, descClientConns, descSockmap, descSockmapFallbacks, descSockmapReleased,
		descAccel, descDraining, descBuild} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, c.o.Version)
	if c.o.Front != nil {
		inFlight, conns := c.o.Front()
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(inFlight))
		ch <- prometheus.MustNewConstMetric(descClientConns, prometheus.GaugeValue, float64(conns))
	}
	if c.o.AppLoad != nil {
		for _, app := range c.o.Apps {
			inFlight, open, busy, streams := c.o.AppLoad(app)
			ch <- prometheus.MustNewConstMetric(descAppInFlight, prometheus.GaugeValue, float64(inFlight), app)
			// In flight without a busy backend connection or an h2c
			// stream: queued (or being answered by loopgate itself, which
			// takes microseconds).
			ch <- prometheus.MustNewConstMetric(descAppQueued, prometheus.GaugeValue, float64(max(inFlight-int64(busy+streams), 0)), app)
			// The two counts are read one after the other, so a connection
			// being handed out may show as busy before it shows as open.
			ch <- prometheus.MustNewConstMetric(descUpstreamConns, prometheus.GaugeValue, float64(max(open-busy, 0)), app, "idle")
			ch <- prometheus.MustNewConstMetric(descUpstreamConns, prometheus.GaugeValue, float64(busy), app, "busy")
		}
	}
	if c.o.Snapshot == nil {
		return
	}
	s := c.o.Snapshot()
	ch <- prometheus.MustNewConstMetric(descDraining, prometheus.GaugeValue, b2f(s.Draining))
	ch <- prometheus.MustNewConstMetric(descAccel, prometheus.GaugeValue, b2f(s.Acceleration.Active))
	if s.Acceleration.Active {
		ch <- prometheus.MustNewConstMetric(descSockmap, prometheus.CounterValue, float64(s.Acceleration.Redirected), "redirect")
		ch <- prometheus.MustNewConstMetric(descSockmap, prometheus.CounterValue, float64(s.Acceleration.Passed), "pass")
		ch <- prometheus.MustNewConstMetric(descSockmapFallbacks, prometheus.CounterValue, float64(s.Acceleration.Fallbacks))
		ch <- prometheus.MustNewConstMetric(descSockmapReleased, prometheus.CounterValue, float64(s.Acceleration.Released))
	}
	for _, a := range s.Apps {
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{a.Name}, labels...)...)
		}
		counter(descStarts, a.Starts)
		counter(descStartFailures, a.StartFailures)
		counter(descCrashes, a.Crashes)
		counter(descRestarts, a.Restarts)
		counter(descRapidFail, a.RapidFailBlocks)
		for _, reason := range slices.Sorted(maps.Keys(a.RecyclesByReason)) {
			counter(descRecycles, a.RecyclesByReason[reason], reason)
		}
		counter(descReloads, a.ConfigReloadsOK, "ok")
		counter(descReloads, a.ConfigReloadsFailed, "failed")
		ch <- prometheus.MustNewConstMetric(descConfigError, prometheus.GaugeValue, b2f(a.ConfigError != ""), a.Name)
		ch <- prometheus.MustNewConstMetric(descOffline, prometheus.GaugeValue, b2f(a.Offline), a.Name)
		if a.Usage != nil {
			ch <- prometheus.MustNewConstMetric(descAppMemory, prometheus.GaugeValue, float64(a.Usage.MemoryBytes), a.Name)
			ch <- prometheus.MustNewConstMetric(descAppCPU, prometheus.CounterValue, a.Usage.CPUSeconds, a.Name)
		}
		var byState [len(processStates)]int
		for _, p := range a.Processes {
			for i, st := range processStates {
				if p.State == st {
					byState[i]++
				}
			}
		}
		for i, st := range processStates {
			ch <- prometheus.MustNewConstMetric(descProcesses, prometheus.GaugeValue, float64(byState[i]), a.Name, st)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
