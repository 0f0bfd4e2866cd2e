package main

import (
	"net"
	"net/netip"

	"github.com/loopgate/loopgate/fastpath"
	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/rs/zerolog"
)

// observer feeds every finished request to the metrics and, unless
// --access-log=false, to one access-log line. It allocates nothing.
type observer struct {
	metrics *metrics.Metrics
	log     zerolog.Logger
	access  bool
	apps    map[string]int // app name -> index in metrics.Options.Apps
}

var _ fastpath.Observer = (*observer)(nil)

func newObserver(m *metrics.Metrics, names []string, log zerolog.Logger, access bool) *observer {
	o := &observer{metrics: m, log: log, access: access, apps: make(map[string]int, len(names))}
	for i, n := range names {
		o.apps[n] = i
	}
	return o
}

// ObserveRequest is called by fastpath on the request's goroutine.
func (o *observer) ObserveRequest(i fastpath.RequestInfo) {
	app, ok := o.apps[i.App]
	if !ok {
		app = -1 // metrics.NoApp
	}
	o.metrics.Observe(app, i.Method.String(), i.Status, i.Duration)
	if !o.access {
		return
	}
	e := o.log.Info()
	if e == nil { // info is filtered out
		return
	}
	var buf [64]byte
	e = e.Str("event", "access").
		Bytes("method", i.RawMethod).
		Bytes("path", i.Target).
		Int("status", i.Status).
		Int64("bytes", i.BytesOut).
		Int64("bytes_in", i.BytesIn).
		Float64("duration_ms", float64(i.Duration.Microseconds())/1000).
		Str("app", i.App).
		Bytes("client", appendAddr(buf[:0], i.RemoteAddr))
	if i.PID != 0 { // loopgate answered itself (502.5, 503, 404, 413): no backend
		e = e.Int("pid", i.PID)
	}
	if i.Aborted {
		e = e.Bool("aborted", true)
	}
	if i.Retried {
		e = e.Bool("retried", true)
	}
	if i.Upgraded {
		e = e.Bool("websocket", true)
	}
	e.Send()
}

// appendAddr writes a client address without allocating for TCP peers;
// IPv4 peers are shown as 1.2.3.4:port, not in IPv4-mapped IPv6 form.
func appendAddr(dst []byte, a net.Addr) []byte {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).AppendTo(dst)
	case nil:
		return dst
	}
	return append(dst, a.String()...)
}
