package supervisor

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// listenerOS is the optional part of the OS seam through which a start
// sees where its process tree listens. realOS has it; with an OS that does
// not, a start only probes its port.
type listenerOS interface {
	// Listeners returns the TCP addresses that pid and its descendants
	// listen on.
	Listeners(pid int) ([]netip.AddrPort, error)
}

const (
	// listenCheckEvery is how often a start that has not listened yet
	// looks at its process tree's listening sockets.
	listenCheckEvery = 100 * time.Millisecond
	// wrongPortGrace is how long the process tree must keep listening
	// elsewhere, and not on its port, before the start fails: an app may
	// open another listener (metrics, a debugger) just before its own.
	wrongPortGrace = 3 * time.Second
)

// wrongPortError is a start that listens, but not where loopgate connects.
// errors.Is(err, ErrWrongPort) is true.
type wrongPortError struct {
	addrs []netip.AddrPort // where the process tree listens
	port  int              // ASPNETCORE_PORT
	// onPort: it listens on port, but on addresses 127.0.0.1 does not reach.
	onPort bool
}

func (e *wrongPortError) Error() string {
	list := make([]string, len(e.addrs))
	for i, a := range e.addrs {
		list[i] = a.String()
	}
	where := strings.Join(list, ", ")
	if i := strings.LastIndex(where, ", "); i >= 0 {
		where = where[:i] + " and " + where[i+2:]
	}
	if e.onPort {
		return fmt.Sprintf("the app listens on %s, which loopgate cannot reach at 127.0.0.1:%d: it must listen on 127.0.0.1 or on all addresses", where, e.port)
	}
	return fmt.Sprintf("the app listens on %s, not on ASPNETCORE_PORT %d: does it read ASPNETCORE_PORT?", where, e.port)
}

func (e *wrongPortError) Is(target error) bool { return target == ErrWrongPort }

// listenVerdict judges where a process tree listens while 127.0.0.1:port
// does not accept yet: nil when it listens nowhere (still starting) or on
// an address that reaches 127.0.0.1:port (the probe is about to succeed).
func listenVerdict(addrs []netip.AddrPort, port int) *wrongPortError {
	if len(addrs) == 0 {
		return nil
	}
	var onPort []netip.AddrPort
	for _, a := range addrs {
		if int(a.Port()) == port {
			if ip := a.Addr(); ip.IsUnspecified() || ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
				return nil
			}
			onPort = append(onPort, a)
		}
	}
	if len(onPort) > 0 {
		return &wrongPortError{addrs: onPort, port: port, onPort: true}
	}
	return &wrongPortError{addrs: addrs, port: port}
}

// wrongPortWatch follows one start's listeners and says when they have
// been wrong for wrongPortGrace. Not safe for concurrent use.
type wrongPortWatch struct {
	os    listenerOS // nil: no diagnosis
	pid   int
	port  int
	next  time.Time // when to look again
	since time.Time // when the current wrong verdict was first seen
}

// check looks at the listeners when it is time to and returns the verdict
// once it has held for wrongPortGrace, else nil.
func (w *wrongPortWatch) check(now time.Time) error {
	if w.os == nil || now.Before(w.next) {
		return nil
	}
	w.next = now.Add(listenCheckEvery)
	addrs, err := w.os.Listeners(w.pid)
	if err != nil {
		w.os = nil // cannot tell here: stop looking, keep probing
		return nil
	}
	v := listenVerdict(addrs, w.port)
	switch {
	case v == nil:
		w.since = time.Time{}
	case w.since.IsZero():
		w.since = now
	case now.Sub(w.since) >= wrongPortGrace:
		return v
	}
	return nil
}

// exitedError is a start whose process exited before it listened; its text
// starts with the exit status. errors.Is(err, ErrExited) is true.
type exitedError struct {
	status string // "exit status 3", "signal: killed"
	port   int
}

func (e *exitedError) Error() string {
	return fmt.Sprintf("%s: the process exited before listening on ASPNETCORE_PORT %d", e.status, e.port)
}

func (e *exitedError) Is(target error) bool { return target == ErrExited }
