// The eBPF sockmap as forwarding sees it: one decision, bypassesSockmap,
// of which bodies keep off its redirection. A backend connection that
// carries a large response body is released from the sockmap's TCP
// fallback (bpf.Accel.Release) and closed after the body; a large upload
// goes over a connection kept out of the sockmap (bpf.Accel.Exclude), or,
// chunked, closes its redirected connection after it.

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

// sockmapHeadroom is what shares the reader's queue with a body besides
// the longest head loopgate accepts (MaxHeaderBytes, MaxResponseHeaderBytes):
// the headers loopgate adds to a request and chunk framing, with room to
// spare. In bytes.
const sockmapHeadroom = 64 << 10

// bypassesSockmap is the one decision of whether a body of n bytes keeps
// off the sockmap's redirection: true when n exceeds QueueLimit minus the
// longest head and sockmapHeadroom (4 MiB - 128 KiB with the defaults),
// the least body that, with its head, can leave its reader more than
// QueueLimit behind. A smaller body cannot push its connection onto the
// sockmap's TCP fallback, so it stays redirected, which costs less than
// plain TCP when the reader keeps up: 1 MiB responses took 0.75x the CPU
// per MiB of plain TCP (loopgate plus its backend, interleaved medians,
// bench/cmd/compare -rows bodies). Lower thresholds cost more: with 256
// KiB, every 1 MiB response released and closed its backend connection,
// and cost 1.11x plain TCP (the dials and the fallback path). A larger
// body takes what costs no more than plain TCP: an upload of known length
// a connection of the bulk pool, which the sockmap leaves alone (Exclude);
// a response its connection released (Release) and closed after it; a
// chunked upload, whose length is known only at its end, the redirected
// connection it started on, which is then closed, not pooled.
func (x *exchange) bypassesSockmap(n int64) bool {
	cfg := &x.s.cfg
	if cfg.Sockmap == nil {
		return false
	}
	head := max(cfg.MaxHeaderBytes, cfg.MaxResponseHeaderBytes) + sockmapHeadroom
	return n > int64(cfg.Sockmap.QueueLimit()-head)
}

// bulkUpload reports a request body of known length that bypasses the
// sockmap: it goes over a connection of the bulk pool. Once the writer's
// end of a redirected connection has gone over to the sockmap's TCP path
// it cannot leave it (the backend may answer at any time), and that path
// costs more per byte than plain TCP, for every later request on the
// connection too.
func (x *exchange) bulkUpload() bool {
	return x.reqBody == reqBodySized && x.bypassesSockmap(x.reqLen)
}

// uploadOffSockmap reports a chunked request body, streamed over a
// redirected connection (sized ones that large took the bulk pool), that
// may have left the backend's reader far enough behind for loopgate's end
// to go over to the sockmap's TCP path for good: that connection is closed
// after the exchange, not pooled.
func (x *exchange) uploadOffSockmap() bool {
	return x.reqBody == reqBodyChunked && x.bypassesSockmap(x.bytesIn)
}

// bulkBody decides, once the response head is in, whether the body
// bypasses the sockmap: a Content-Length that does releases the connection
// now, a chunked or close-delimited body once enough bytes went by
// (releaseLate, checked by consume).
func (x *exchange) bulkBody(size int) {
	if x.s.cfg.Sockmap == nil || x.h2s != nil || x.bodyEnd {
		return
	}
	switch {
	case x.kind == bodyFixed && x.bypassesSockmap(int64(size)):
		x.releaseBulk()
	case x.kind == bodyChunked || x.kind == bodyUntilClose:
		x.releaseLate = true
	}
}

// releaseBulk releases the backend connection for the body being relayed.
// Safe because loopgate writes nothing more on it: the request and its
// body were sent (respond waited for the pump), and the connection is
// closed, not pooled, after the body.
func (x *exchange) releaseBulk() {
	x.releaseLate = false
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
