// queueLength: the bound on an app's requests waiting for a backend
// connection (IIS applicationPool@queueLength), and the 503 past it.

package fastpath

import (
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

var (
	strRetryAfter = []byte("Retry-After")
	// retryAfterQueueFull is the Retry-After of the queue-full 503, in
	// seconds: a full queue drains as fast as the backends answer, and
	// a client that waits a second finds room or fails as fast again.
	retryAfterQueueFull = []byte("1")
)

// appQueue counts an app's requests that wait for a backend connection:
// those that found every connection of their backend process busy
// (--backend-max-conns), or for an h2c app every stream (the app's
// SETTINGS_MAX_CONCURRENT_STREAMS on each connection), and wait, up to
// --backend-queue-timeout, for one to come free. Safe for concurrent use; it must not be copied.
type appQueue struct {
	_       noCopy
	waiting atomic.Int64
}

// enterQueue decides whether the request may wait for a connection of up:
// it may not when up has every connection busy and the app already has
// spec.QueueLength requests waiting. A request that will not wait (a
// connection is free) is not counted. When it returns true with counted
// set, the caller calls leaveQueue once up.get returns.
func (x *exchange) enterQueue(up *upstream) (ok, counted bool) {
	limit := int64(x.spec.QueueLength)
	if limit <= 0 || up.busy.Load() < int64(x.s.cfg.MaxConnsPerBackend) {
		return true, false
	}
	if !x.route.queue.join(limit) {
		return false, false
	}
	return true, true
}

// enterStreamQueue is enterQueue for a request to an h2c app that found
// no stream free on any connection of its process (h2cWait): it may wait
// unless the app already has spec.QueueLength requests waiting, and is
// counted until leaveQueue.
func (x *exchange) enterStreamQueue() bool {
	return x.route.queue.join(int64(x.spec.QueueLength))
}

// join counts one more waiting request, unless limit (when > 0) already
// wait.
func (q *appQueue) join(limit int64) bool {
	if q.waiting.Add(1) > limit && limit > 0 {
		q.waiting.Add(-1)
		return false
	}
	return true
}

func (x *exchange) leaveQueue() { x.route.queue.waiting.Add(-1) }

// answerQueueFull answers 503 with Retry-After and the page HTTP.sys gives
// when an application pool's queue is full, at once, without waiting.
func (x *exchange) answerQueueFull() bool {
	x.releaseUnused()
	x.s.log.Debug().Str("app", x.route.name).Int("pid", x.pid).Int("queue_length", x.spec.QueueLength).
		Msg("queueLength requests already wait for a backend connection: 503")
	x.answerPage(fasthttp.StatusServiceUnavailable, pageServiceUnavailable)
	x.ctx.Response.Header.SetBytesKV(strRetryAfter, retryAfterQueueFull)
	return true
}
