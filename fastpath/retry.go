// The retry rule: the stages an attempt can fail at, the facts weighed
// besides, and retryable, the one function that decides whether a failed
// attempt is made again (TestRetryRule is its table), with backendExit,
// which learns how the backend's process ended where that matters.

package fastpath

import (
	"net"
	"time"

	"github.com/loopgate/loopgate/supervisor"
)

// stage names the step of an attempt that failed.
type stage uint8

const (
	stageNone        stage = iota
	stageConnect           // no connection to the backend: the dial failed
	stageRedial            // a stale pooled connection was replaced, and that dial failed
	stageSend              // writing the request head (and a small body) failed
	stageNoResponse        // not one byte of response head came (fasthttp reports that as io.EOF)
	stageBadResponse       // the response head failed after its first byte, timed out, or was malformed
)

// retryFacts is what retryable weighs besides the stage that failed.
type retryFacts struct {
	attempt    int  // 0 for the first attempt
	idempotent bool // GET, HEAD, PUT, DELETE, OPTIONS or TRACE (RFC 9110 §9.2.2)
	streamed   bool // the body was being streamed (exchange.streamedBody): it cannot be sent again
	// exit is how the backend process ended (stageNoResponse only, see
	// backendExit): ExitNone while it still runs.
	exit supervisor.ExitCause
}

// retryable is the retry rule: whether a failed attempt is made again, on
// a fresh connection and, when the supervisor has one, another process.
// There is one retry at most. It is made
//   - when the request provably never reached the app: the connect failed
//     (also the one that replaced a stale pooled connection), or the write
//     of the head failed (the backend had closed the connection);
//   - when an idempotent request whose body is in memory got no byte of
//     response, and its process still runs (a stale keep-alive connection
//     the backend closed without reading it) or was ended from outside
//     (SIGKILL, SIGTERM: the operator; loopgate's own stop).
//
// It is not made when the process ended by its own hand while it had the
// request (an exit status, SIGABRT, SIGSEGV, SIGBUS: .NET's unhandled
// exception, a stack overflow; the OOM killer at the app's memoryLimit):
// that request may be what killed it, and
// sent on it would kill the next process too. The client gets 502.3 and the
// supervisor counts one crash. TestRetryRule is the rule's table.
func retryable(st stage, f retryFacts) bool {
	if f.attempt > 0 {
		return false
	}
	switch st {
	case stageConnect, stageRedial, stageSend:
		return true
	case stageNoResponse:
		return f.idempotent && !f.streamed && f.exit != supervisor.ExitSelf
	}
	return false
}

// How long an attempt that got no byte of response waits to learn how its
// process ended (backendExit): exitWait once a connect to the process was
// refused (it is gone, or going), exitGrace when the connect succeeded (it
// likely runs, and the connection was stale; a dying process may still
// accept for a moment). The supervisor reaps a dead process within
// milliseconds; past the wait the process counts as running (ExitNone).
const (
	exitWait  = 500 * time.Millisecond
	exitGrace = 50 * time.Millisecond
)

// backendExit finds out, for an attempt that got no byte of response,
// whether its process still runs (ExitNone) or how it ended
// (Backend.AwaitExit). Only this failure path pays for it: a connect, and
// a wait that ends when the process does.
func (x *exchange) backendExit() supervisor.ExitCause {
	wait := exitWait
	if c, err := net.DialTimeout("tcp", x.b.Addr(), x.s.cfg.ConnectTimeout); err == nil {
		_ = c.Close()
		wait = exitGrace
	}
	return x.b.AwaitExit(wait)
}
