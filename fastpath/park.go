// Parking: a plain keep-alive client connection idle past parkAfter gives
// up its goroutine and read buffer and waits in an epoll set.

package fastpath

import (
	"errors"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopgate/loopgate/internal/sockio"
)

// parkAfter is how long a keep-alive client connection waits for its next
// request in its serving goroutine, read buffer at hand, before it is
// parked: the goroutine ends (its stack, 8-16 KiB once a request was
// served, and the --max-header-bytes read buffer go back to their pools)
// and the socket waits in a sockio.Poller. When the next request arrives
// the connection is served by a new goroutine as if just accepted
// (fasthttp's ServeConn), under --header-read-timeout. A client that
// sends its next request within parkAfter (any busy keep-alive client)
// never meets the poller; one idle longer pays one epoll registration and
// a goroutine start. An idle connection then holds about 1 KiB (socket
// wrappers, the poller's entry), where nginx holds about 0.5 KiB.
const parkAfter = time.Second

// parkSlack is how much earlier than parkAfter a connection may be parked
// when its previous idle wait's deadline is still set (idleRead): a
// keep-alive connection busier than that sets no read deadline between
// its requests.
const parkSlack = parkAfter / 10

// errParked ends fasthttp's serving of a connection that is being parked:
// its read while waiting for a next request fails with it (fasthttp takes
// that as a keep-alive connection ending and closes it without an answer;
// the close parks it instead).
var errParked = errors.New("idle connection parked")

// parking is a server's poller of idle plain-TCP client connections, with
// the sweep that enforces --idle-timeout on them. Safe for concurrent use.
type parking struct {
	poller *sockio.Poller
	idle   time.Duration // --idle-timeout
	lim    *connLimiter
	serve  func(net.Conn) // serves a connection that became readable
	parks  atomic.Uint64  // connections parked so far
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// newParking returns nil (no parking) when idle is not longer than
// parkAfter or no poller can be made.
func newParking(idle time.Duration, lim *connLimiter, serve func(net.Conn)) *parking {
	if idle <= parkAfter {
		return nil
	}
	p, err := sockio.NewPoller()
	if err != nil {
		return nil
	}
	pk := &parking{poller: p, idle: idle, lim: lim, serve: serve, done: make(chan struct{})}
	pk.wg.Add(1)
	go pk.sweep()
	return pk
}

// releaseAfter is how many connections parked since the last release
// make the sweep hand their memory back to the system (see sweep).
const releaseAfter = 1024

// releaseEvery bounds how often that is done while connections keep being
// parked; releaseQuiet (seconds without a park) ends a burst: two reaping
// rounds of fasthttp's idle workers (MaxIdleWorkerDuration is parkAfter).
const (
	releaseEvery = 10 * time.Second
	releaseQuiet = 3
)

// releaser decides when the sweep hands memory back to the system: once a
// burst of parks is over (no connection parked for releaseQuiet seconds,
// by when fasthttp has reaped the workers that served them), and at most
// every releaseEvery while one goes on. A burst counts from the last
// release at a burst's end, not from one during it: the parks after that
// one (391 of a burst of 5,000, once) left up to 16 MiB of free heap
// resident until the runtime's slow scavenger found it.
type releaser struct {
	prevTick    uint64 // parks at the last tick
	quiet       int    // ticks without a park
	lastParks   uint64 // parks at the last release
	burstStart  uint64 // parks at the last release at a burst's end
	lastRelease time.Time
}

// tick is the sweep's look, once a second, at n, the connections parked
// so far; it reports whether to release now.
func (r *releaser) tick(n uint64, now time.Time) bool {
	if n == r.prevTick {
		r.quiet++
	} else {
		r.quiet = 0
	}
	r.prevTick = n
	switch {
	case r.quiet >= releaseQuiet && n-r.burstStart >= releaseAfter:
		r.lastParks, r.burstStart, r.lastRelease = n, n, now
		return true
	case n-r.lastParks >= releaseAfter && now.Sub(r.lastRelease) >= releaseEvery:
		r.lastParks, r.lastRelease = n, now
		return true
	}
	return false
}

// sweep closes parked connections idle for --idle-timeout, every second.
// When many connections were parked since it last did so (a burst of
// clients gone idle), it also runs the garbage collector twice and returns
// free memory to the system: the read and write buffers of those
// connections sit in fasthttp's pools (sync.Pool, emptied over two
// collections) and their goroutines' stacks in the runtime's, and an idle
// server allocates too little to ever start a collection of its own (the
// runtime forces one every 2 minutes, and returns memory slowly). Two
// collections of a heap of a few MiB live take a few milliseconds.
func (pk *parking) sweep() {
	defer pk.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var expired []*trackedConn
	var rel releaser
	for {
		select {
		case <-pk.done:
			return
		case <-t.C:
		}
		if rel.tick(pk.parks.Load(), time.Now()) {
			runtime.GC()
			debug.FreeOSMemory()
		}
		cutoff := sockio.Monotonic() - int64(pk.idle)
		expired = expired[:0]
		pk.lim.mu.Lock()
		for c := range pk.lim.conns {
			if c.parked.Load() {
				if at := c.idleSince.Load(); at != 0 && at <= cutoff {
					expired = append(expired, c)
				}
			}
		}
		pk.lim.mu.Unlock()
		for _, c := range expired {
			_ = c.Close()
		}
	}
}

// stop ends the poller and the sweep and closes every parked connection
// (they are idle: a shutdown closes idle connections).
func (pk *parking) stop() {
	if pk == nil {
		return
	}
	pk.once.Do(func() {
		close(pk.done)
		pk.wg.Wait()
		pk.poller.Close()
		var parked []*trackedConn
		pk.lim.mu.Lock()
		for c := range pk.lim.conns {
			if c.parked.Load() {
				parked = append(parked, c)
			}
		}
		pk.lim.mu.Unlock()
		for _, c := range parked {
			_ = c.Close()
		}
	})
}

// idleRead is a read of a connection waiting for its next request (since:
// when it went idle, sockio.Monotonic ns), under fasthttp's idle deadline
// (held back by SetReadDeadline). A parkable connection waits at most
// parkAfter, then fails with errParked and is marked to be parked by its
// close, unless the idle deadline comes first. Both deadlines are known
// without reading the clock, and only the earlier is set: a deadline set
// costs time.Until, the netpoller's clock reading and a runtime timer
// change. On a busy connection it is not set at all: the previous wait's
// is kept while it is still on the socket and at most parkSlack (a
// connection that is not parked: idleSlack) earlier.
func (c *trackedConn) idleRead(p []byte, since int64) (int, error) {
	idle := c.idleDeadline
	c.idleDeadline = time.Time{}
	c.headPending.Store(false)
	if c.park == nil {
		c.armIdle(idle, since)
		n, err := c.guard.read(p, c.ClientConn.Read)
		if n > 0 {
			c.headNext.Store(true)
		}
		return n, err
	}
	parkAt := since + int64(parkAfter)
	park := sockio.MonotonicTime(parkAt)
	// fasthttp's idle deadline may come first: then it is the one, and
	// its passing no reason to park.
	idleFirst := !idle.IsZero() && !idle.After(park)
	switch set := c.waitDeadline.Load(); {
	case idleFirst:
		c.waitDeadline.Store(0)
		_ = c.Conn.SetReadDeadline(idle)
	case set != 0 && parkAt-set >= 0 && parkAt-set < int64(parkSlack):
		// The park deadline of the previous wait is still set and at
		// most parkSlack earlier: a busy connection parks that much
		// sooner rather than pay a deadline set per request.
	default:
		c.waitDeadline.Store(parkAt)
		_ = c.Conn.SetReadDeadline(park)
	}
	n, err := c.guard.read(p, c.ClientConn.Read)
	if n > 0 {
		c.headNext.Store(true)
	}
	if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || idleFirst {
		return n, err
	}
	c.waitDeadline.Store(0)
	_ = c.Conn.SetReadDeadline(time.Time{})
	c.parkNext.Store(true)
	return 0, errParked
}

// armIdle sets fasthttp's idle deadline on a connection that is not
// parked (TLS, or parking off) for a wait that began at since, unless the
// previous wait's is still on the socket and at most idleSlack earlier: a
// busy connection is then closed that much sooner than --idle-timeout
// after its last request. A zero idle is a second read of the same wait
// (crypto/tls reading the rest of a record), which keeps what the first
// one set.
func (c *trackedConn) armIdle(idle time.Time, since int64) {
	if idle.IsZero() {
		return
	}
	at := sockio.MonotonicOf(idle)
	if set := c.waitDeadline.Load(); set != 0 && at-set >= 0 && at-set < idleSlack(at-since) {
		return
	}
	c.waitDeadline.Store(at)
	_ = c.Conn.SetReadDeadline(idle)
}

// idleSlack is how much earlier than its idle timeout (wait, in ns) a busy
// connection that is not parked may be closed: 1/64 of it, at most
// parkSlack, so that such a connection sets its idle deadline at most
// every parkSlack however many requests it carries.
func idleSlack(wait int64) int64 { return min(wait/64, int64(parkSlack)) }

// SetReadDeadline sets the read deadline, except fasthttp's deadline for
// the wait for a next request, which idleRead applies (or the park
// deadline before it), and the deadline for the rest of a head whose
// first bytes idleRead returned, which the next read applies, if there is
// one before the next idle wait. Under TLS these come through crypto/tls,
// whose Read calls Read.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if c.idleSince.Load() != 0 {
		c.idleDeadline = t
		return nil
	}
	if c.headNext.CompareAndSwap(true, false) {
		c.headDeadline = t
		c.headPending.Store(true)
		return nil
	}
	c.headPending.Store(false)
	c.waitDeadline.Store(0)
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, a held head deadline (SetReadDeadline)
// no longer pending.
func (c *trackedConn) SetDeadline(t time.Time) error {
	c.headNext.Store(false)
	c.headPending.Store(false)
	c.waitDeadline.Store(0)
	return c.ClientConn.SetDeadline(t)
}

// parkNow puts c, whose serving goroutine is ending, in the poller; false
// if it cannot be (c is then closed as usual).
func (c *trackedConn) parkNow() bool {
	select {
	case <-c.park.done:
		return false
	default:
	}
	id := c.park.poller.NewID()
	c.parkID.Store(id)
	c.parked.Store(true)
	if err := c.park.poller.Add(c.Conn, id, c.resume); err != nil {
		c.parked.Store(false)
		return false
	}
	c.park.parks.Add(1)
	return true
}

// resume is the poller's callback: c is readable (a request, or the
// client's FIN or reset), so it is served again unless a close took it
// first.
func (c *trackedConn) resume() {
	if !c.parked.CompareAndSwap(true, false) {
		return
	}
	c.park.poller.Detach(c.Conn)
	go c.park.serve(c)
}

// unpark takes a parked c out of the poller before it is closed.
func (c *trackedConn) unpark() {
	if c.park != nil && c.parked.CompareAndSwap(true, false) {
		c.park.poller.Remove(c.parkID.Load(), c.Conn)
	}
}
