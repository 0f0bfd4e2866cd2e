// Poller: idle connections waited on by one epoll instance instead of a
// goroutine each.

package sockio

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNotPollable is returned by Poller.Add for a connection that is not a
// TCP socket (TLS is read through its own buffers, so readiness of the
// socket says nothing about it).
var ErrNotPollable = errors.New("connection cannot be polled")

// Poller waits for idle TCP connections to become readable (data, the
// peer's FIN or a reset) with one epoll instance and one goroutine for all
// of them, so that an idle connection needs no goroutine of its own (and
// no goroutine stack: 8-16 KiB once a request has been served on it).
// Each Add is one-shot: ready is called once, from the poller's
// goroutine, and the connection is out of the poller by then. The socket
// stays registered with Go's netpoller as well (an fd may belong to two
// epoll sets); nothing reads it while it waits here. Safe for concurrent
// use.
type Poller struct {
	epfd int
	mu   sync.Mutex
	next uint64
	m    map[uint64]func()
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// NewPoller starts a poller's goroutine; Close stops it.
func NewPoller() (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &Poller{epfd: fd, m: map[uint64]func(){}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.run()
	return p, nil
}

// NewID returns an id for Add, never 0 and never returned before.
func (p *Poller) NewID() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	return p.next
}

// Add waits for c to become readable and then calls ready. id is from
// NewID, for Remove.
func (p *Poller) Add(c net.Conn, id uint64, ready func()) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return ErrNotPollable
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.m[id] = ready
	p.mu.Unlock()
	// The event's data (Fd and Pad, the epoll_data union) carries the id.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil {
		cerr = err
	}
	if cerr != nil {
		p.mu.Lock()
		delete(p.m, id)
		p.mu.Unlock()
		return cerr
	}
	return nil
}

// Remove takes the connection added as id out of the poller: true if it
// was still waiting (its ready will not be called), false if ready has
// been or is being called. c must be the connection added, still open;
// closing it after Remove is the caller's.
func (p *Poller) Remove(id uint64, c net.Conn) bool {
	p.mu.Lock()
	_, ok := p.m[id]
	delete(p.m, id)
	p.mu.Unlock()
	if ok {
		p.del(c)
	}
	return ok
}

// del takes c's socket out of the epoll set.
func (p *Poller) del(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
		}
	}
}

// Len returns how many connections are waiting.
func (p *Poller) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// Close stops the poller within its wait interval; the connections still
// waiting are not called back (their owner closes them).
func (p *Poller) Close() {
	p.once.Do(func() {
		close(p.done)
		p.wg.Wait()
		_ = unix.Close(p.epfd)
	})
}

// pollWait bounds one epoll_wait, so that Close is noticed.
const pollWait = 200 // ms

func (p *Poller) run() {
	defer p.wg.Done()
	evs := make([]unix.EpollEvent, 256)
	for {
		select {
		case <-p.done:
			return
		default:
		}
		n, err := unix.EpollWait(p.epfd, evs, pollWait)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for i := range evs[:n] {
			id := uint64(uint32(evs[i].Fd)) | uint64(uint32(evs[i].Pad))<<32
			p.mu.Lock()
			ready, ok := p.m[id]
			delete(p.m, id)
			p.mu.Unlock()
			if ok {
				// The socket stays in the epoll set, disabled (one-shot):
				// ready takes it out with Detach before it is read again.
				ready()
			}
		}
	}
}

// Detach takes c's socket out of the epoll set after its ready callback;
// the callback calls it before handing the connection back to a reader.
func (p *Poller) Detach(c net.Conn) { p.del(c) }

// ErrWouldBlock is TryRead's answer when nothing is there to read.
var ErrWouldBlock = errors.New("read would block")

// TryRead reads what c has now without waiting: ErrWouldBlock when
// nothing, io.EOF at the peer's end. Deadlines and Close apply as to Read.
func TryRead(c *net.TCPConn, p []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true
			}
		}
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr == syscall.EAGAIN:
		return 0, ErrWouldBlock
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: rerr}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}
