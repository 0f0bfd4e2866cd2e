// Per-app load for metrics: requests in flight and upstream connections.

package fastpath

// AppLoad is one app's load at one instant, for metrics.
type AppLoad struct {
	// InFlight counts the app's requests from routing until their answer
	// is complete: waiting for a backend, forwarded, or tunnelled
	// (WebSocket).
	InFlight int64
	// UpstreamOpen counts the connections open from loopgate to the app's
	// backend processes, idle or busy, summed over their pools.
	UpstreamOpen int
	// UpstreamBusy counts those carrying a request or a tunnel now.
	UpstreamBusy int
	// Streams counts the requests holding an HTTP/2 stream to the app's
	// processes now (backendProtocol="h2c"): its busy count, as its
	// requests hold no connection of their own.
	Streams int
}

// AppLoad returns the load of the app whose Name is name; ok is false when
// no app has that name. It only reads counters and allocates nothing, so a
// metrics scrape may call it for every app; requests never wait for it
// (they take the app's lock once per backend process, on first use). Safe
// for concurrent use.
func (s *Server) AppLoad(name string) (load AppLoad, ok bool) {
	for _, rt := range s.router.routes {
		if rt.name == name {
			return rt.load(), true
		}
	}
	return AppLoad{}, false
}

// adopt ties u to rt's app the first time one of rt's requests uses it: a
// supervisor.Process does not say which app it belongs to. After that first
// time it costs one atomic load.
func (rt *route) adopt(u *upstream) {
	if u.owner.Load() != nil || !u.owner.CompareAndSwap(nil, rt) {
		return
	}
	rt.upsMu.Lock()
	rt.ups = append(rt.ups, u)
	rt.upsMu.Unlock()
}

// load sums the app's counters and forgets the upstreams of processes that
// were retired (Close) and have no connection left.
func (rt *route) load() AppLoad {
	l := AppLoad{InFlight: rt.inflight.Load()}
	rt.upsMu.Lock()
	defer rt.upsMu.Unlock()
	live := rt.ups[:0]
	for _, u := range rt.ups {
		open, busy := u.conns(), int(u.busy.Load())
		streams := 0
		if p := u.h2.Load(); p != nil {
			streams = int(p.streams.Load())
		}
		if u.closed.Load() && open == 0 && busy == 0 && streams == 0 {
			continue
		}
		l.UpstreamOpen += open
		l.UpstreamBusy += busy
		l.Streams += streams
		live = append(live, u)
	}
	clear(rt.ups[len(live):])
	rt.ups = live
	return l
}
