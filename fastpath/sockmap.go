// The eBPF sockmap as forwarding sees it: a backend connection that
// carries a large response body is released from the sockmap's TCP
// fallback (bpf.Accel.Release) and closed after the body; a large upload
// goes over a connection kept out of the sockmap (bpf.Accel.Exclude).

package fastpath

import (
	"net"
	"net/netip"
)

// Sockmap is the eBPF sockmap fast path between loopgate and its backends
// (*bpf.Accel implements it), as Config.Sockmap.
type Sockmap interface {
	// QueueLimit is how many bytes a reader may fall behind before its
	// peer stops redirecting to it and sends over TCP.
	QueueLimit() int
	// Release is told that loopgate sends nothing more on its connection
	// from local to remote and closes it after reading: if loopgate then
	// falls behind, the backend's end leaves the sockmap and sends the
	// rest over plain TCP instead of the sockmap's costlier TCP path.
	Release(local, remote netip.AddrPort) error
	// Exclude keeps the socket fd, before it connects, out of the
	// sockmap: the bulk pool's connections (upstream.go) stay plain TCP.
	Exclude(fd int) error
}

// bulkUpload reports a request body large enough for the backend, reading
// it, to fall behind the sockmap's queue limit: it goes over a connection
// of the bulk pool, which the sockmap leaves alone. Once the writer's end
// of an accelerated connection goes over to the sockmap's TCP path it
// cannot leave it safely (the backend may answer at any time), and that
// path costs more per byte than plain TCP; a body of unknown length
// (chunked) takes the main pool.
func (x *exchange) bulkUpload() bool {
	sm := x.s.cfg.Sockmap
	return sm != nil && x.reqBody == reqBodySized && x.reqLen > int64(sm.QueueLimit())
}

// bulkBody decides, once the response head is in, whether the body is
// large enough for its reader (loopgate, paced by the client) to fall
// behind the sockmap's queue limit: a Content-Length past the limit
// releases the connection now, a chunked or close-delimited body once
// that many bytes went by (releaseAt, checked by consume).
func (x *exchange) bulkBody(size int) {
	sm := x.s.cfg.Sockmap
	if sm == nil || x.h2s != nil || x.bodyEnd {
		return
	}
	limit := sm.QueueLimit()
	switch {
	case x.kind == bodyFixed && size > limit:
		x.releaseBulk()
	case x.kind == bodyChunked || x.kind == bodyUntilClose:
		x.releaseAt = int64(limit)
	}
}

// releaseBulk releases the backend connection for the body being relayed.
// Safe because loopgate writes nothing more on it: the request and its
// body were sent (respond waited for the pump), and the connection is
// closed, not pooled, after the body.
func (x *exchange) releaseBulk() {
	x.releaseAt = 0
	x.backendOK = false
	local, lok := x.conn.LocalAddr().(*net.TCPAddr)
	remote, rok := x.conn.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok {
		return
	}
	if err := x.s.cfg.Sockmap.Release(local.AddrPort(), remote.AddrPort()); err != nil {
		x.s.log.Warn().Err(err).Str("app", x.route.name).Int("pid", x.pid).Msg("a large response body stays on the sockmap's TCP fallback")
	}
}
